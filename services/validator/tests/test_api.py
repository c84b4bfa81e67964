"""ValidatorService's contract: authentication and permission on every RPC, argument errors,
NOT_FOUND / FAILED_PRECONDITION / RESOURCE_EXHAUSTED, idempotency, paging and policies."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
import uuid
from pathlib import Path

import grpc
import pytest

from causeway.common.v1 import environment_pb2, model_pb2
from causeway.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from causeway.validator.v1 import policy_pb2, run_pb2
from causeway.validator.v1 import validator_service_pb2 as vpb
from causeway.validator.v1 import validator_service_pb2_grpc as vgrpc
from libs.auth.interceptor import bearer
from services.validator.tests.support import models
from services.validator.tests.support.harness import validator_app, validator_env, validator_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with validator_stack(tmp_path_factory.mktemp("api")) as s:
        yield s


@pytest.fixture(scope="module")
def version(stack) -> int:
    return stack.register("apimodel", models.torchscript(models.NeverReturns()), "torchscript", tags={})


def ref(name="apimodel", number=1):
    return model_pb2.ModelRef(name=name, version=number)


CALLS = {
    "StartValidation": vpb.StartValidationRequest(model=ref(), policy_name="quick"),
    "GetValidationRun": vpb.GetValidationRunRequest(run_id="x"),
    "WatchValidationRun": vpb.WatchValidationRunRequest(run_id="x"),
    "CancelValidationRun": vpb.CancelValidationRunRequest(run_id="x", reason="r"),
    "ListValidationRuns": vpb.ListValidationRunsRequest(),
    "GetValidationReport": vpb.GetValidationReportRequest(run_id="x"),
    "ListPolicies": vpb.ListPoliciesRequest(),
    "GetPolicy": vpb.GetPolicyRequest(name="dev"),
}


def call(stack, method: str, request, metadata=()):
    result = getattr(stack.validator, method)(request, metadata=metadata, timeout=30)
    return list(result) if method == "WatchValidationRun" else result


def code_of(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    assert isinstance(err.value, grpc.Call)
    return err.value.code(), err.value.details()


@pytest.mark.parametrize("method", sorted(CALLS))
def test_every_rpc_refuses_unauthenticated_and_unauthorized_callers(stack, version, method):
    request = CALLS[method]
    assert code_of(lambda: call(stack, method, request))[0] == grpc.StatusCode.UNAUTHENTICATED
    expired = stack.idp.issue("alice", ["researcher"], issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    assert code_of(lambda: call(stack, method, request, bearer(expired)))[0] == grpc.StatusCode.UNAUTHENTICATED
    forged = stack.idp.issue("alice", ["researcher"], audience="someone-else")
    assert code_of(lambda: call(stack, method, request, bearer(forged)))[0] == grpc.StatusCode.UNAUTHENTICATED
    nobody = stack.md("eve", roles=(), teams=())
    code, details = code_of(lambda: call(stack, method, request, nobody))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "lacks permission" in details


@pytest.mark.parametrize("method", ["StartValidation", "CancelValidationRun"])
def test_running_validations_needs_validations_run(stack, version, method):
    code, details = code_of(lambda: call(stack, method, CALLS[method], stack.md("rev", ["reviewer"])))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "validations.run" in details


def test_only_the_owning_team_or_qa_may_validate_a_model(stack, version):
    request = vpb.StartValidationRequest(model=ref(number=version), policy_name="quick")
    code, details = code_of(lambda: call(stack, "StartValidation", request, stack.md("bob", teams=("cardio",))))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "belongs to team oncology" in details
    run = call(stack, "StartValidation", request, stack.md("quinn", ["qa-approver"], teams=()))
    assert run.run.requested_by.subject == "quinn"
    assert stack.wait(run.run.run_id).state == run_pb2.RUN_STATE_COMPLETED


@pytest.mark.parametrize(
    ("request_fields", "fragment"),
    [
        ({"model": ref("Not_A_Label"), "policy_name": "quick"}, "DNS-1123"),
        ({"model": ref(number=0), "policy_name": "quick"}, "version must be >= 1"),
        ({"model": ref()}, "exactly one of policy_name or environment"),
        ({"model": ref(), "environment": environment_pb2.ENVIRONMENT_UNSPECIFIED}, "DEV, TEST or PROD"),
        ({"model": ref(), "policy_name": "quick", "request_id": "not-a-uuid"}, "request_id must be a UUID"),
        ({"model": ref(), "policy_name": "quick", "champion": ref(number=0)}, "champion.version"),
    ],
)
def test_start_refuses_bad_input(stack, version, request_fields, fragment):
    code, details = code_of(
        lambda: call(stack, "StartValidation", vpb.StartValidationRequest(**request_fields), stack.md())
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in details


@pytest.mark.parametrize(
    ("method", "req", "fragment"),
    [
        ("WatchValidationRun", vpb.WatchValidationRunRequest(run_id="x", after_sequence=-1), "after_sequence"),
        ("CancelValidationRun", vpb.CancelValidationRunRequest(run_id="x"), "reason is required"),
        ("ListValidationRuns", vpb.ListValidationRunsRequest(page_size=-1), "page_size"),
        ("ListValidationRuns", vpb.ListValidationRunsRequest(page_token="garbage"), "page_token"),
        ("ListValidationRuns", vpb.ListValidationRunsRequest(version=2), "version needs model_name"),
        ("GetPolicy", vpb.GetPolicyRequest(), "name is required"),
    ],
)
def test_other_rpcs_refuse_bad_input(stack, method, req, fragment):
    code, details = code_of(lambda: call(stack, method, req, stack.md()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in details


@pytest.mark.parametrize(
    ("method", "req"),
    [
        ("GetValidationRun", vpb.GetValidationRunRequest(run_id="nope")),
        ("WatchValidationRun", vpb.WatchValidationRunRequest(run_id="nope")),
        ("CancelValidationRun", vpb.CancelValidationRunRequest(run_id="nope", reason="r")),
        ("GetValidationReport", vpb.GetValidationReportRequest(run_id="nope")),
        ("GetPolicy", vpb.GetPolicyRequest(name="nope")),
        ("StartValidation", vpb.StartValidationRequest(model=ref(), policy_name="nope")),
        ("StartValidation", vpb.StartValidationRequest(model=ref(number=999), policy_name="quick")),
        ("StartValidation", vpb.StartValidationRequest(model=ref(), policy_name="quick", champion=ref("ghost"))),
    ],
)
def test_missing_things_are_not_found(stack, version, method, req):
    assert code_of(lambda: call(stack, method, req, stack.md()))[0] == grpc.StatusCode.NOT_FOUND


def test_request_ids_make_start_idempotent(stack, version):
    key = str(uuid.uuid4())
    request = vpb.StartValidationRequest(model=ref(number=version), policy_name="quick", request_id=key)
    first = call(stack, "StartValidation", request, stack.md()).run
    again = call(stack, "StartValidation", request, stack.md()).run
    assert first.run_id == again.run_id
    other = vpb.StartValidationRequest(model=ref(number=version), policy_name="dev", request_id=key)
    code, details = code_of(lambda: call(stack, "StartValidation", other, stack.md()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "already used" in details
    stack.wait(first.run_id)


def test_reports_exist_only_for_completed_runs_and_match_their_digest(stack, version):
    run = stack.validate("apimodel", version, "quick")
    report = stack.report(run.run_id)
    assert report.report.run_id == run.run_id
    assert hashlib.sha256(report.report_json).hexdigest() == report.report_digest.hex
    slow = stack.start("apimodel", version, "slow")
    code, details = code_of(lambda: stack.report(slow.run_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "only a COMPLETED run has a report" in details
    cancelled = stack.validator.CancelValidationRun(
        vpb.CancelValidationRunRequest(run_id=slow.run_id, reason="t"), metadata=stack.md()
    )
    assert cancelled.run.state == run_pb2.RUN_STATE_CANCELLED
    assert code_of(lambda: stack.report(slow.run_id))[0] == grpc.StatusCode.FAILED_PRECONDITION


def test_archived_versions_cannot_be_validated(stack):
    number = stack.register("retired", models.torchscript(models.NeverReturns()), "torchscript", tags={})
    registry = registry_service_pb2_grpc.RegistryServiceStub(stack.registry_channel)
    registry.ArchiveModelVersion(
        registry_service_pb2.ArchiveModelVersionRequest(model=ref("retired", number), reason="old"), metadata=stack.md()
    )
    request = vpb.StartValidationRequest(model=ref("retired", number), policy_name="quick")
    code, details = code_of(lambda: call(stack, "StartValidation", request, stack.md()))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "archived" in details


def test_list_pages_newest_first_with_filters(stack, version):
    started = [stack.start("apimodel", version, "quick").run_id for _ in range(3)]
    for run_id in started:
        stack.wait(run_id)
    seen, token = [], ""
    while True:
        page = stack.validator.ListValidationRuns(
            vpb.ListValidationRunsRequest(
                model_name="apimodel", state=run_pb2.RUN_STATE_COMPLETED, page_size=2, page_token=token
            ),
            metadata=stack.md(),
        )
        assert len(page.runs) <= 2
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert seen[:3] == started[::-1] and len(seen) == len(set(seen))
    assert all(
        r.state == run_pb2.RUN_STATE_COMPLETED
        for r in stack.validator.ListValidationRuns(
            vpb.ListValidationRunsRequest(model_name="apimodel"), metadata=stack.md()
        ).runs
        if r.run_id in started
    )
    code, _ = code_of(
        lambda: stack.validator.ListValidationRuns(
            vpb.ListValidationRunsRequest(model_name="other", page_token=token or page_token_of(stack)),
            metadata=stack.md(),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def page_token_of(stack) -> str:
    page = stack.validator.ListValidationRuns(
        vpb.ListValidationRunsRequest(model_name="apimodel", page_size=1), metadata=stack.md()
    )
    return page.next_page_token


def test_policies_are_listed_with_their_file_digests(stack):
    policies = {
        p.name: p for p in stack.validator.ListPolicies(vpb.ListPoliciesRequest(), metadata=stack.md()).policies
    }
    assert {"dev", "test", "prod", "contain", "quick"} <= set(policies)
    prod = stack.validator.GetPolicy(vpb.GetPolicyRequest(name="prod"), metadata=stack.md()).policy
    source = Path(stack.env["CAUSEWAY_VALIDATOR_POLICIES_DIR"]) / "prod.yaml"
    assert prod.policy_digest.hex == hashlib.sha256(source.read_bytes()).hexdigest()
    assert prod.checks[0].type == policy_pb2.CHECK_TYPE_DIGEST_MATCH
    assert prod.sandbox.memory_bytes == 8 << 30 and prod.timeout.seconds == 1800
    assert set(prod.allowed_formats) == {
        model_pb2.MODEL_FORMAT_SAFETENSORS,
        model_pb2.MODEL_FORMAT_TORCHSCRIPT,
        model_pb2.MODEL_FORMAT_ONNX,
    }


def test_a_full_queue_is_resource_exhausted(stack, tmp_path, version):
    work = Path(tempfile.mkdtemp(prefix="causeway-validator-", dir="/tmp"))
    env = validator_env(
        tmp_path,
        stack.idp,
        stack.registry.address,
        Path(stack.env["CAUSEWAY_VALIDATOR_POLICIES_DIR"]),
        work,
        MAX_CONCURRENT_RUNS="1",
        MAX_QUEUED_RUNS="1",
    )
    try:
        with validator_app(env) as (_app, _server, channel):
            stub = vgrpc.ValidatorServiceStub(channel)
            request = vpb.StartValidationRequest(model=ref(number=version), policy_name="slow")
            busy = stub.StartValidation(request, metadata=stack.md()).run
            for item in stub.WatchValidationRun(
                vpb.WatchValidationRunRequest(run_id=busy.run_id), metadata=stack.md(), timeout=60
            ):
                if item.event.state_changed.state == run_pb2.RUN_STATE_RUNNING:
                    break
            queued = stub.StartValidation(request, metadata=stack.md()).run
            assert queued.state == run_pb2.RUN_STATE_QUEUED and queued.queue_position == 1
            with pytest.raises(grpc.RpcError) as err:
                stub.StartValidation(request, metadata=stack.md())
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            for run_id in (queued.run_id, busy.run_id):
                done = stub.CancelValidationRun(
                    vpb.CancelValidationRunRequest(run_id=run_id, reason="done"), metadata=stack.md()
                ).run
                assert done.state == run_pb2.RUN_STATE_CANCELLED
    finally:
        shutil.rmtree(work, ignore_errors=True)
