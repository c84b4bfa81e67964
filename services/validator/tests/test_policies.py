"""Policy files: the shipped ones load, and every kind of mistake is refused with file:line."""

from pathlib import Path

import pytest

from services.validator.domain import policy_model as pm
from services.validator.domain.policies import DEFAULT_DIR, PolicyError, load_policies, parse_policy

GOOD = """\
name: adhoc
description: a policy for a test
timeout: 10m
allowed_formats: [torchscript, pickle]
sandbox:
  memory_bytes: 2GiB
  cpu_time_limit: 60s
  max_file_bytes: 8MiB
  wall_time_limit: 2m
checks:
  - {name: digest, type: digest_match}
  - name: gate
    type: metric_gate
    parameters: {decision_threshold: 0.4}
    thresholds:
      - {metric: auroc, comparator: ">=", absolute: 0.8}
      - {metric: rmse, comparator: "<=", max_relative_degradation: 0.05}
"""


def problems(text: str) -> list[str]:
    policy, errs = parse_policy(text.encode(), "p.yaml")
    assert policy is None, "expected the policy to be refused"
    return errs


def test_shipped_policies_load_and_follow_the_environment_rules():
    policies = load_policies(DEFAULT_DIR)
    assert policies.names() == ["dev", "prod", "test"]
    prod = policies.get("prod")
    assert prod.environment == "prod"
    assert set(prod.allowed_formats) == {"safetensors", "torchscript", "onnx"}
    assert "torch_state_dict" in policies.get("dev").allowed_formats
    for policy in policies.all():
        types = [c.type for c in policy.checks]
        assert types[:4] == [pm.DIGEST_MATCH, pm.ARTIFACT_SCAN, pm.FORMAT_ALLOWLIST, pm.SAFE_LOAD]
        assert len(policy.digest) == 64
        assert not policy.unrestricted_pickle


def test_a_good_policy_parses_with_sizes_durations_and_thresholds():
    policy, errs = parse_policy(GOOD.encode(), "p.yaml")
    assert errs == [] and policy is not None
    assert policy.sandbox == pm.SandboxLimits(2 * 1024**3, 60, 8 * 1024**2, 120.0)
    assert policy.timeout_seconds == 600
    gate = policy.checks[1]
    assert gate.parameters == {"decision_threshold": 0.4}
    assert gate.thresholds[0] == pm.Threshold("auroc", ">=", absolute=0.8)
    assert gate.thresholds[1].relative
    # No environment and pickle allowed: the only way raw pickles are ever loaded (in the sandbox).
    assert policy.unrestricted_pickle


@pytest.mark.parametrize(
    ("edit", "line", "fragment"),
    [
        (("timeout: 10m", "timeout: soon"), 3, "timeout must be a duration"),
        (("[torchscript, pickle]", "[torchscript, tensorflow]"), 4, "unknown format 'tensorflow'"),
        (("memory_bytes: 2GiB", "memory_bytes: lots"), 6, "sandbox.memory_bytes must be a size"),
        (("type: digest_match", "type: digest_matches"), 11, "checks[0].type must be one of"),
        (('comparator: ">=", absolute: 0.8', 'comparator: ">", absolute: 0.8'), 16, "comparator must be"),
        (("metric: auroc", "metric: auc"), 16, "does not measure 'auc'"),
        (("decision_threshold: 0.4", "decision_threshold: 4"), 14, "must be between 0 and 1"),
        (("decision_threshold: 0.4", "threshold: 0.4"), 14, "unknown key 'threshold'"),
        (("max_relative_degradation: 0.05", "max_relative_degradation: 5"), 17, "between 0 and 1"),
        (("description: a policy for a test", "descripton: typo"), 2, "unknown key 'descripton'"),
    ],
)
def test_mistakes_are_refused_with_the_line(edit, line, fragment):
    errs = problems(GOOD.replace(*edit))
    assert any(e.startswith(f"p.yaml:{line}: ") and fragment in e for e in errs), errs


def test_bad_yaml_names_the_line():
    errs = problems(GOOD.replace("checks:\n", "checks: [\n"))
    assert errs[0].startswith("p.yaml:") and "not valid YAML" in errs[0]


def test_duplicate_keys_and_names_are_refused():
    errs = problems(GOOD.replace("timeout: 10m\n", "timeout: 10m\ntimeout: 5m\n"))
    assert any("duplicate key 'timeout'" in e and e.startswith("p.yaml:4:") for e in errs), errs
    text = GOOD.replace("  - name: gate", "  - {name: digest, type: format_allowlist}\n  - name: gate")
    assert any("check name 'digest' is used twice" in e for e in problems(text))


def test_environment_policies_cannot_allow_unsafe_formats_or_skip_required_checks():
    text = GOOD.replace("name: adhoc\n", "name: adhoc\nenvironment: prod\n")
    errs = problems(text)
    assert any("pickle may not be allowed in prod" in e for e in errs), errs
    assert any("must run artifact_scan as a required check" in e for e in errs), errs
    dev = GOOD.replace("name: adhoc\n", "name: adhoc\nenvironment: test\n").replace("pickle", "torch_state_dict")
    assert any("torch_state_dict may not be allowed in test" in e for e in problems(dev))


def test_scan_must_come_before_loading_and_relative_bounds_only_in_metric_gates():
    first = "  - {name: digest, type: digest_match}"
    text = GOOD.replace(first, first + "\n  - {name: load, type: safe_load}\n  - {name: scan, type: artifact_scan}")
    assert any("artifact_scan must come before" in e for e in problems(text))
    text = GOOD + (
        "  - name: lat\n    type: latency_budget\n    thresholds:\n"
        '      - {metric: latency_p95_ms, comparator: "<=", max_relative_degradation: 0.1}\n'
    )
    assert any("only METRIC_GATE compares against the champion" in e for e in problems(text))


def test_a_directory_with_a_bad_file_is_refused_as_a_whole(tmp_path: Path):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(GOOD.replace("name: adhoc", "name: other").replace("2GiB", "2 parsecs"))
    with pytest.raises(PolicyError) as err:
        load_policies(tmp_path)
    assert f"{tmp_path / 'bad.yaml'}:6: sandbox.memory_bytes" in str(err.value)
    (tmp_path / "bad.yaml").write_text(GOOD)
    with pytest.raises(PolicyError, match="already used by"):
        load_policies(tmp_path)
