"""The validator end to end: real registry binary, real model files, real sandbox, real reports.

Each scenario of the issue: a good model passes and its report is recorded; a malicious pickle
fails at the scanners, and without scanners is still contained by the sandbox; a model that
regresses against the champion fails the metric gate; hostile models are killed and reported;
a network attempt is refused; a wrong signature fails; no sandbox means ERROR and nothing loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import select
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import grpc
import pytest
import torch
from google.protobuf import json_format

from causeway.audit.v1 import audit_event_pb2
from causeway.audit.v1 import audit_service_pb2 as apb
from causeway.audit.v1 import audit_service_pb2_grpc as apb_grpc
from causeway.common.v1 import environment_pb2, validation_pb2
from causeway.registry.v1 import governance_service_pb2 as gpb
from causeway.registry.v1 import governance_service_pb2_grpc as gpb_grpc
from causeway.validator.v1 import report_pb2, run_pb2
from causeway.validator.v1 import validator_service_pb2 as vpb
from libs.testing.waiting import wait_until
from services.validator.tests.support import models
from services.validator.tests.support.harness import validator_app, validator_env, validator_stack
from services.validator.tests.support.workers import SANDBOX_UID, worker_pids

PASSED = report_pb2.CHECK_STATUS_PASSED
FAILED = report_pb2.CHECK_STATUS_FAILED
SKIPPED = report_pb2.CHECK_STATUS_SKIPPED
TAGS = {"task": "binary-classification"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with validator_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture(scope="module")
def mlp():
    return models.train_mlp()


@pytest.fixture(scope="module")
def golden():
    return models.golden_parquet()


def checks(report) -> dict:
    return {c.name: c for c in report.report.checks}


def test_a_good_model_passes_and_its_report_is_recorded_in_the_registry(stack, mlp, golden):
    version = stack.register(
        "tox21", models.torchscript(models.Probabilities(mlp)), "torchscript", golden=golden, tags=TAGS
    )
    before = stack.get_version("tox21", version)
    assert all(v.verdict == validation_pb2.VALIDATION_VERDICT_UNSPECIFIED for v in before.validations)
    run = stack.start("tox21", version, "dev")
    assert run.state in (run_pb2.RUN_STATE_QUEUED, run_pb2.RUN_STATE_RUNNING)
    events = [
        e.event
        for e in stack.validator.WatchValidationRun(
            vpb.WatchValidationRunRequest(run_id=run.run_id), metadata=stack.md(), timeout=300
        )
    ]
    states = [e.state_changed.state for e in events if e.WhichOneof("event") == "state_changed"]
    assert states == [run_pb2.RUN_STATE_QUEUED, run_pb2.RUN_STATE_RUNNING, run_pb2.RUN_STATE_COMPLETED]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    started = [e.check_started.name for e in events if e.WhichOneof("event") == "check_started"]
    finished = [e.check_finished.result for e in events if e.WhichOneof("event") == "check_finished"]
    assert stack.app is not None
    policy = [c.name for c in stack.app.policies.get("dev").checks]
    assert started == policy and [f.name for f in finished] == policy

    done = stack.wait(run.run_id)
    assert done.verdict == validation_pb2.VALIDATION_VERDICT_PASSED, done
    report = stack.report(run.run_id)
    assert hashlib.sha256(report.report_json).hexdigest() == report.report_digest.hex == done.report_digest.hex
    by_name = checks(report)
    assert {n: c.status for n, c in by_name.items()} == {n: PASSED for n in policy}, report.report
    assert by_name["digest"].evidence["computed"] == "sha256:" + stack.get_version("tox21", version).artifact.digest.hex
    gate = by_name["golden_metrics"]
    assert {m.name for m in gate.metrics} == {"accuracy", "f1", "auroc"}
    assert all(m.value > 0.8 for m in gate.metrics)
    assert {t.status for t in gate.thresholds} == {PASSED, SKIPPED}  # rmse/mae skipped; no champion yet
    assert by_name["safe_load"].evidence["loader"] == "torch.jit.load"
    info = report.report.runtime_info
    assert (
        info["torch"] == torch.__version__
        and info["sandbox_uid"] == str(SANDBOX_UID)
        and info["sandbox_network"] == "lo"
    )
    assert report.report.policy_digest.hex == stack.app.policies.get("dev").digest

    # Recorded in the registry: the same bytes, and the version's status comes from that report.
    governance = gpb_grpc.GovernanceServiceStub(stack.registry_channel)
    record = governance.GetValidationReport(
        gpb.GetValidationReportRequest(report_digest=report.report_digest), metadata=stack.md()
    ).record
    assert record.report_json == report.report_json and record.run_id == run.run_id
    assert record.recorded_by.subject == "service:validator"
    status = {v.environment: v for v in stack.get_version("tox21", version).validations}
    assert status[environment_pb2.ENVIRONMENT_DEV].verdict == validation_pb2.VALIDATION_VERDICT_PASSED
    assert status[environment_pb2.ENVIRONMENT_DEV].report_digest.hex == report.report_digest.hex
    # ... and the registry put the report digest into its audit chain, recorded by the validator.
    audit = apb_grpc.AuditServiceStub(stack.registry_channel)
    events = audit.ListEvents(
        apb.ListEventsRequest(filter=audit_event_pb2.EventFilter(actor_subject="service:validator"), page_size=1000),
        metadata=stack.md("quinn", ["qa-approver"]),
    ).events
    assert report.report_digest.hex in {e.payload_digest.hex for e in events}


def test_rerunning_the_same_policy_on_the_same_artifact_reproduces_the_metrics(stack, mlp, golden):
    data = models.safetensors_bytes(mlp)
    version = stack.register(
        "repro", data, "safetensors", golden=golden, tags=TAGS | {"architecture": "mlp/v1", "output": "logits"}
    )
    first, second = (stack.validate("repro", version, "dev") for _ in range(2))
    assert first.verdict == second.verdict == validation_pb2.VALIDATION_VERDICT_PASSED
    a, b = checks(stack.report(first.run_id)), checks(stack.report(second.run_id))
    for name in ("golden_metrics", "determinism", "features"):
        assert [(m.name, m.value) for m in a[name].metrics] == [(m.name, m.value) for m in b[name].metrics]
        # repr: skipped thresholds carry NaN, which is equal to itself only as text
        assert [repr(t.candidate_value) for t in a[name].thresholds] == [
            repr(t.candidate_value) for t in b[name].thresholds
        ]
    assert a["features"].evidence == b["features"].evidence
    assert first.report_digest != second.report_digest  # different run ids and times, same measurements


def test_a_model_that_regresses_against_the_champion_fails_the_metric_gate(stack, mlp, golden):
    champion = stack.register(
        "sepsis", models.torchscript(models.Probabilities(mlp)), "torchscript", golden=golden, tags=TAGS
    )
    stack.set_champion("sepsis", champion)
    worse = models.train_mlp(seed=3)
    with torch.no_grad():  # blind it to the four most informative features
        first = worse.layers[0]
        assert isinstance(first, torch.nn.Linear)
        first.weight[:, [0, 1, 10, 11]] = 0.0
    candidate = stack.register(
        "sepsis", models.torchscript(models.Probabilities(worse)), "torchscript", golden=golden, tags=TAGS
    )
    run = stack.validate("sepsis", candidate, "dev")
    assert (run.champion.name, run.champion.version) == ("sepsis", champion)
    assert run.verdict == validation_pb2.VALIDATION_VERDICT_FAILED
    gate = checks(stack.report(run.run_id))["golden_metrics"]
    assert gate.status == FAILED
    relative = [
        t
        for t in gate.thresholds
        if t.threshold.WhichOneof("bound") == "max_relative_degradation" and t.threshold.metric == "auroc"
    ]
    assert relative[0].status == FAILED and relative[0].HasField("champion_value")
    assert relative[0].candidate_value < relative[0].effective_bound < relative[0].champion_value
    absolute = [t for t in gate.thresholds if t.threshold.WhichOneof("bound") == "absolute"]
    assert all(t.status == PASSED for t in absolute)  # good enough on its own, worse than the champion
    assert "champion" in gate.message


@pytest.fixture
def listeners():
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    folder = Path(tempfile.mkdtemp(prefix="causeway-sock-", dir="/tmp"))
    os.chmod(folder, 0o777)  # noqa: S103 - reachable for anyone who could see it
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(folder / "host.sock"))
    os.chmod(folder / "host.sock", 0o777)  # noqa: S103
    unix.listen()
    abstract = socket.socket(socket.AF_UNIX)
    name = f"causeway-{uuid.uuid4().hex}"
    abstract.bind("\0" + name)
    abstract.listen()
    yield {
        "port": tcp.getsockname()[1],
        "unix": str(folder / "host.sock"),
        "abstract": name,
        "socks": [tcp, unix, abstract],
    }
    for s in (tcp, unix, abstract):
        s.close()
    shutil.rmtree(folder, ignore_errors=True)


def no_connection(listeners) -> bool:
    return select.select(listeners["socks"], [], [], 0.5)[0] == []


def escape_payload(listeners) -> tuple[bytes, str]:
    """The escape pickle and the host path its payload writes (it must never appear on the host)."""
    marker = f"/tmp/causeway-escape-{uuid.uuid4().hex}"
    return models.escape_pickle(marker, listeners["port"], listeners["unix"], listeners["abstract"]), marker


def test_a_malicious_pickle_fails_at_the_scanners_and_is_never_loaded(stack, listeners):
    marker = f"/tmp/causeway-escape-{uuid.uuid4().hex}"
    code = models.escape_code(marker, listeners["port"], listeners["unix"], listeners["abstract"])
    buffer = io.BytesIO()  # the payload inside a torch zip, as a "state_dict" (dev allows the format)
    torch.save({"w": torch.zeros(3), "payload": models.Payload(code)}, buffer)
    version = stack.register("trojan", buffer.getvalue(), "torch_state_dict", tags=TAGS | {"architecture": "mlp/v1"})
    run = stack.validate("trojan", version, "dev")
    assert run.verdict == validation_pb2.VALIDATION_VERDICT_FAILED
    by_name = checks(stack.report(run.run_id))
    assert by_name["scan"].status == FAILED and "exec" in by_name["scan"].message
    scanners = json_format.MessageToDict(by_name["scan"].evidence)["scanners"]
    assert {s["scanner"] for s in scanners} == {"picklescan", "modelscan"} and all(s["issues"] for s in scanners)
    assert all(by_name[n].status == SKIPPED for n in ("format", "safe_load", "signature", "golden_metrics"))
    assert not os.path.exists(marker) and no_connection(listeners)


def test_without_scanners_the_sandbox_alone_contains_the_payload(stack, listeners):
    payload, marker = escape_payload(listeners)
    version = stack.register("trojan-raw", payload, "pickle", tags=TAGS)
    run = stack.validate("trojan-raw", version, "contain")
    assert run.state == run_pb2.RUN_STATE_COMPLETED and run.verdict == validation_pb2.VALIDATION_VERDICT_FAILED
    load = checks(stack.report(run.run_id))["load"]
    assert load.status == FAILED and load.evidence["violation"] == "forbidden_syscall"
    assert "killed by seccomp" in load.message
    # The payload ran (inside), but the host saw nothing: no file, no connection of any kind.
    assert not os.path.exists(marker)
    assert no_connection(listeners)


def test_a_model_that_tries_the_network_is_refused(stack, listeners):
    version = stack.register("phone-home", models.network_pickle(listeners["port"]), "pickle", tags=TAGS)
    run = stack.validate("phone-home", version, "contain")
    load = checks(stack.report(run.run_id))["load"]
    assert load.status == FAILED and load.evidence["violation"] == "forbidden_syscall"
    assert no_connection(listeners)


@pytest.mark.parametrize(
    ("module", "violation", "fragment"),
    [(models.MemoryHog, "memory_limit", "memory limit"), (models.NeverReturns, "cpu_time", "CPU-time limit")],
)
def test_hostile_models_are_killed_and_reported(stack, module, violation, fragment):
    name = "hog" if module is models.MemoryHog else "spin"
    version = stack.register(name, models.torchscript(module()), "torchscript", tags=TAGS)
    run = stack.validate(name, version, "tight")
    assert run.state == run_pb2.RUN_STATE_COMPLETED and run.verdict == validation_pb2.VALIDATION_VERDICT_FAILED
    signature = checks(stack.report(run.run_id))["signature"]
    assert signature.status == FAILED and signature.evidence["violation"] == violation
    assert fragment in signature.message


@pytest.mark.parametrize(
    ("inputs", "outputs", "fragment"),
    [
        ((("x", "FP32", [-1, 10]),), (("p", "FP32", [-1, 1]),), "rejected a probe batch"),
        ((("x", "FP32", [-1, 12]),), (("p", "FP32", [-1, 3]),), "declared [-1, 3]"),
        ((("x", "FP32", [-1, 12]),), (("p", "FP32", [-1, 1]), ("q", "FP32", [-1, 1])), "returned 1 outputs"),
    ],
)
def test_a_wrong_declared_signature_fails(stack, mlp, golden, inputs, outputs, fragment):
    data = models.torchscript(models.Probabilities(mlp))
    version = stack.register(
        "mislabeled", data, "torchscript", golden=golden, tags=TAGS, inputs=inputs, outputs=outputs
    )
    run = stack.validate("mislabeled", version, "tight")
    assert run.verdict == validation_pb2.VALIDATION_VERDICT_FAILED
    signature = checks(stack.report(run.run_id))["signature"]
    assert signature.status == FAILED and fragment in signature.message


def test_an_environment_target_uses_the_registrys_policy_for_it(stack, mlp, golden):
    version = stack.register("envtarget", models.onnx_bytes(mlp), "onnx", golden=golden, tags=TAGS)
    run = stack.start("envtarget", version, environment=environment_pb2.ENVIRONMENT_DEV)
    assert run.policy_name == "dev" and run.environment == environment_pb2.ENVIRONMENT_DEV
    done = stack.wait(run.run_id)
    assert done.verdict == validation_pb2.VALIDATION_VERDICT_PASSED
    assert stack.report(run.run_id).report.environment == environment_pb2.ENVIRONMENT_DEV


def test_without_a_sandbox_runs_error_and_nothing_is_loaded_in_process(stack, tmp_path, mlp, golden, monkeypatch):
    import pickle

    import onnxruntime
    import safetensors.torch

    loaded = []
    for owner, name in (
        (torch, "load"),
        (torch.jit, "load"),
        (pickle, "load"),
        (pickle, "loads"),
        (safetensors.torch, "load_file"),
        (onnxruntime, "InferenceSession"),
    ):
        original = getattr(owner, name)

        def spy(*a, _n=name, _o=original, **k):
            loaded.append(_n)
            return _o(*a, **k)

        monkeypatch.setattr(owner, name, spy)
    version = stack.register(
        "nobox", models.torchscript(models.Probabilities(mlp)), "torchscript", golden=golden, tags=TAGS
    )
    work = Path(tempfile.mkdtemp(prefix="causeway-validator-", dir="/tmp"))
    env = validator_env(
        tmp_path,
        stack.idp,
        stack.registry.address,
        Path(stack.env["CAUSEWAY_VALIDATOR_POLICIES_DIR"]),
        work,
        SANDBOX_BWRAP="/nonexistent/bwrap",
    )
    try:
        with validator_app(env) as (_app, _server, channel):
            from causeway.common.v1 import model_pb2
            from causeway.validator.v1 import validator_service_pb2_grpc as vgrpc

            stub = vgrpc.ValidatorServiceStub(channel)
            request = vpb.StartValidationRequest(
                model=model_pb2.ModelRef(name="nobox", version=version), policy_name="dev"
            )
            run = stub.StartValidation(request, metadata=stack.md()).run
            for _ in stub.WatchValidationRun(
                vpb.WatchValidationRunRequest(run_id=run.run_id), metadata=stack.md(), timeout=120
            ):
                pass
            done = stub.GetValidationRun(vpb.GetValidationRunRequest(run_id=run.run_id), metadata=stack.md()).run
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert done.state == run_pb2.RUN_STATE_ERRORED
    assert "sandbox unavailable: bwrap not found or not executable at /nonexistent/bwrap" in done.message
    assert "refusing to load models without isolation" in done.message
    assert loaded == []
    assert not done.HasField("report_digest")
    status = {v.environment: v for v in stack.get_version("nobox", version).validations}
    assert status[environment_pb2.ENVIRONMENT_DEV].verdict == validation_pb2.VALIDATION_VERDICT_UNSPECIFIED


def test_cancel_kills_the_worker_and_records_nothing(stack):
    version = stack.register("forever", models.torchscript(models.NeverReturns()), "torchscript", tags=TAGS)
    run = stack.start("forever", version, "slow")
    for item in stack.validator.WatchValidationRun(
        vpb.WatchValidationRunRequest(run_id=run.run_id), metadata=stack.md(), timeout=120
    ):
        if item.event.WhichOneof("event") == "check_started" and item.event.check_started.name == "signature":
            break
    assert worker_pids(os.getpid())  # the run's worker is alive and found: the check after the cancel can fail
    with pytest.raises(grpc.RpcError) as err:
        stack.validator.CancelValidationRun(
            vpb.CancelValidationRunRequest(run_id=run.run_id, reason="x"), metadata=stack.md("mallory")
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    cancelled = stack.validator.CancelValidationRun(
        vpb.CancelValidationRunRequest(run_id=run.run_id, reason="wrong model"), metadata=stack.md()
    ).run
    assert cancelled.state == run_pb2.RUN_STATE_CANCELLED and "wrong model" in cancelled.message
    wait_until(lambda: not worker_pids(os.getpid()), message="the cancelled run's worker is still alive")
    with pytest.raises(grpc.RpcError) as err:
        stack.validator.CancelValidationRun(
            vpb.CancelValidationRunRequest(run_id=run.run_id, reason="again"), metadata=stack.md()
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    governance = gpb_grpc.GovernanceServiceStub(stack.registry_channel)
    records = governance.ListValidationReports(
        gpb.ListValidationReportsRequest(model_name="forever"), metadata=stack.md()
    ).records
    assert list(records) == []
