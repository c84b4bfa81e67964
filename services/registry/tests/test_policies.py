"""Environment policies: the built-in default, a replacing file, and refusal of bad files by line."""

import textwrap

import pytest

from libs.config.settings import ConfigError
from libs.errors.domain_errors import InvalidArgument, NotFound
from services.registry.domain.policies import (
    DEFAULT_FILE,
    SUBMITTER_ALLOWED,
    SUBMITTER_EXCLUDED,
    PolicyFileError,
    load_policies,
    parse_policies,
)


def _write(tmp_path, text: str):
    path = tmp_path / "policies.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_default_is_dev_test_prod_as_the_issue_describes():
    policies = load_policies()
    assert policies.source == str(DEFAULT_FILE)
    dev, test, prod = policies.all()
    assert (dev.environment, dev.validation_policy, dev.approvals.min_approvals, dev.requires_environment) == (
        "dev",
        "dev",
        0,
        "",
    )
    assert not dev.approvals_required
    assert (test.validation_policy, test.approvals.min_approvals, test.requires_environment) == ("test", 1, "dev")
    assert test.approvals.approver_roles == ("qa-approver", "reviewer")
    assert test.approvals.submitter_rule == SUBMITTER_EXCLUDED
    assert (prod.validation_policy, prod.approvals.min_approvals, prod.requires_environment) == ("prod", 2, "test")
    assert prod.approvals.approver_roles == ("qa-approver",)
    assert prod.approvals.submitter_excluded


def test_each_policy_has_its_own_stable_digest(tmp_path):
    default = {p.environment: p.digest for p in load_policies().all()}
    assert len(set(default.values())) == 3
    assert all(len(d) == 64 for d in default.values())
    # The same policies written differently (order, comments, flow style) have the same digests...
    same = _write(
        tmp_path,
        """
        environments:
          prod: {requires_environment: test, validation: {policy: prod},
                 approvals: {submitter_rule: EXCLUDED, approver_roles: [qa-approver], min_approvals: 2}}
          test:
            requires_environment: dev
            validation: {policy: test}
            approvals: {min_approvals: 1, approver_roles: [qa-approver, reviewer]}
          dev: {validation: {policy: dev}}
    """,
    )
    assert {p.environment: p.digest for p in load_policies(same).all()} == default
    # ...and changing prod changes only prod's digest.
    changed = same.read_text().replace("min_approvals: 2", "min_approvals: 3")
    digests = {p.environment: p.digest for p in parse_policies(changed, "x").all()}
    assert digests["prod"] != default["prod"] and digests["test"] == default["test"]


def test_a_file_replaces_the_default_as_a_whole(tmp_path):
    path = _write(
        tmp_path,
        """
        environments:
          dev:
            approvals: {min_approvals: 1, submitter_rule: allowed}
    """,
    )
    policies = load_policies(path)
    assert [p.environment for p in policies.all()] == ["dev"]
    dev = policies.get("dev")
    assert dev.validation_policy == "" and dev.approvals.submitter_rule == SUBMITTER_ALLOWED
    assert dev.approvals.eligible({"anything"})  # no approver roles: any person
    with pytest.raises(NotFound, match="prod has no policy configured"):
        policies.get("prod")
    with pytest.raises(InvalidArgument):
        policies.get("staging")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("environments:\n  dev: [unclosed\n", 3, "not valid YAML"),
        ("environments:\n  dev: {}\n  staging: {}\n", 3, "unknown environment 'staging'"),
        ("environments:\n  prod:\n    approvals:\n      min_approvals: -1\n", 4, "whole number"),
        ("environments:\n  prod:\n    approvals:\n      min_approvals: two\n", 4, "whole number"),
        ("environments:\n  prod:\n    approvals:\n      approver_roles: [qa-aprover]\n", 4, "'qa-aprover' cannot sign"),
        ("environments:\n  prod:\n    approvals:\n      approver_roles: [release-manager]\n", 4, "cannot sign"),
        ("environments:\n  prod:\n    approvals:\n      submitter_rule: sometimes\n", 4, "'excluded' or 'allowed'"),
        ("environments:\n  prod:\n    validaton: {policy: prod}\n", 3, "unknown key 'validaton'"),
        ("environments:\n  prod:\n    validation: {}\n", 3, "needs 'policy'"),
        ("environments:\n  prod:\n    requires_environment: test\n", 3, "'test' is not configured"),
        (
            "environments:\n  dev:\n    requires_environment: prod\n  prod:\n    requires_environment: dev\n",
            3,
            "cycle: dev -> prod -> dev",
        ),
        ("environments:\n  dev: {}\n  dev: {}\n", 3, "'dev' twice"),
        ("environments: {}\n", 1, "environments is empty"),
        ("policies: {}\n", 1, "unknown key 'policies'"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    with pytest.raises(PolicyFileError) as err:
        load_policies(path)
    assert any(p.startswith(f"{path}:{line}: ") and message in p for p in err.value.problems), err.value.problems
    assert isinstance(err.value, ConfigError)  # main reports it like any other start-up misconfiguration


def test_every_problem_is_reported_at_once(tmp_path):
    path = _write(
        tmp_path,
        """
        environments:
          test:
            approvals: {min_approvals: -2, approver_roles: [boss]}
          qa: {}
    """,
    )
    with pytest.raises(PolicyFileError) as err:
        load_policies(path)
    assert len(err.value.problems) == 3


def test_missing_and_empty_files_are_refused(tmp_path):
    with pytest.raises(PolicyFileError, match="cannot read the policy file"):
        load_policies(tmp_path / "nope.yaml")
    with pytest.raises(PolicyFileError, match="the file is empty"):
        load_policies(_write(tmp_path, "# nothing\n"))
