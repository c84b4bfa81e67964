"""GovernanceService through the full registry (real gRPC server, auth interceptor, dev-IdP tokens)."""

import datetime as dt
import hashlib
import json
import uuid

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2

from causeway.common.v1 import digest_pb2, environment_pb2, errors_pb2, gate_pb2, model_pb2, tensor_pb2
from causeway.common.v1 import validation_pb2 as verdicts
from causeway.registry.v1 import approval_pb2
from causeway.registry.v1 import governance_service_pb2 as pb
from causeway.registry.v1 import governance_service_pb2_grpc as pb_grpc
from causeway.registry.v1 import registry_service_pb2 as reg_pb
from causeway.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.audit.events import canonical_json
from libs.grpc_server.rich_status import rich_status
from libs.grpc_server.server import ServiceBinding
from libs.testing.grpc_servers import channel_to, rich_status_of, running_server
from services.registry.api.governance_convert import gate_failure
from services.registry.domain.governance_records import GateCheck, GateResult
from services.registry.domain.policies import PolicyFileError, load_policies
from services.registry.tests.harness import registry_harness

TEAM = "oncology"
PROD, TEST, DEV = environment_pb2.ENVIRONMENT_PROD, environment_pb2.ENVIRONMENT_TEST, environment_pb2.ENVIRONMENT_DEV
APPROVE = approval_pb2.SIGNATURE_MEANING_APPROVED_FOR_RELEASE


@pytest.fixture
def reg(tmp_path):
    with registry_harness(tmp_path) as harness:
        yield harness


@pytest.fixture
def gov(reg):
    return pb_grpc.GovernanceServiceStub(reg.channel)


def _digest(hex_digest: str) -> digest_pb2.Digest:
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


def _register(reg, name: str = "tox") -> model_pb2.ModelRef:
    """Model `name` version 1, registered by alice (the submitter)."""
    stub = reg_grpc.RegistryServiceStub(reg.channel)
    alice = reg.md("alice", ["researcher"], teams=[TEAM])
    stub.CreateRegisteredModel(reg_pb.CreateRegisteredModelRequest(name=name, owner_team=TEAM), metadata=alice)
    request = reg_pb.CreateModelVersionRequest(
        model_name=name,
        artifact_digest=_digest(reg.put_blob(f"weights of {name}".encode())),
        format=model_pb2.MODEL_FORMAT_SAFETENSORS,
    )
    request.signature.inputs.add(name="x", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 4])
    request.signature.outputs.add(name="y", datatype=tensor_pb2.DATA_TYPE_FP32, shape=[-1, 1])
    return stub.CreateModelVersion(request, metadata=alice).version.ref


def _artifact(reg, ref) -> str:
    return reg.app.catalog.get_version(ref.name, ref.version).artifact_digest


def _report_request(reg, ref, policy: str, verdict=verdicts.VALIDATION_VERDICT_PASSED, **fields):
    body = canonical_json({"run": fields.get("run_id", policy), "policy": policy, "verdict": verdict})
    request = pb.RecordValidationReportRequest(
        model=ref,
        artifact_digest=_digest(_artifact(reg, ref)),
        policy_name=policy,
        policy_digest=_digest(hashlib.sha256(policy.encode()).hexdigest()),
        run_id=f"run-{policy}-{uuid.uuid4().hex[:6]}",
        verdict=verdict,
        report_json=body,
        report_digest=_digest(hashlib.sha256(body).hexdigest()),
    )
    for key, value in fields.items():
        setattr(request, key, value)
    return request


def _validate(reg, gov, ref) -> dict[str, str]:
    return {
        policy: gov.RecordValidationReport(
            _report_request(reg, ref, policy), metadata=reg.service_md("validator")
        ).record.report_digest.hex
        for policy in ("dev", "test", "prod")
    }


def _sign_request(reg, ref, env, report_hex, meaning=APPROVE, reason="meets the release criteria", **fields):
    return pb.CreateApprovalRequest(
        model=ref,
        environment=env,
        meaning=meaning,
        reason=reason,
        artifact_digest=_digest(_artifact(reg, ref)),
        validation_report_digest=_digest(report_hex),
        **fields,
    )


def _error(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def _recomputed_digest(message, signed_fields: int) -> str:
    """What an auditor does: drop the unsigned fields, proto3 JSON, canonical JSON, SHA-256."""
    copy = type(message)()
    copy.CopyFrom(message)
    for field in copy.DESCRIPTOR.fields:
        if field.number > signed_fields:
            copy.ClearField(field.name)
    return hashlib.sha256(canonical_json(json_format.MessageToDict(copy, preserving_proto_field_name=True))).hexdigest()


ANY_REF = model_pb2.ModelRef(name="tox", version=1)
RPCS = {
    "RecordValidationReport": (pb.RecordValidationReportRequest(model=ANY_REF), ["researcher", "qa-approver"]),
    "GetValidationReport": (pb.GetValidationReportRequest(report_digest=_digest("0" * 64)), []),
    "ListValidationReports": (pb.ListValidationReportsRequest(model_name="tox"), []),
    "CreateApproval": (pb.CreateApprovalRequest(model=ANY_REF), ["researcher", "release-manager", "service"]),
    "RevokeApproval": (pb.RevokeApprovalRequest(approval_id=str(uuid.uuid4())), ["researcher", "service"]),
    "GetApproval": (pb.GetApprovalRequest(approval_id=str(uuid.uuid4())), []),
    "ListApprovals": (pb.ListApprovalsRequest(model_name="tox"), []),
    "GetEnvironmentPolicy": (pb.GetEnvironmentPolicyRequest(environment=PROD), []),
    "ListEnvironmentPolicies": (pb.ListEnvironmentPoliciesRequest(), []),
    "CheckGates": (pb.CheckGatesRequest(model=ANY_REF, environment=PROD), []),
}


@pytest.mark.parametrize("method", sorted(RPCS))
def test_every_rpc_refuses_unauthenticated_callers_and_callers_without_its_permission(reg, gov, method):
    request, roles_without = RPCS[method]
    call = getattr(gov, method)
    err = _error(lambda: call(request))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "missing credentials" in err.details()
    stale = reg.md("quinn", ["qa-approver"], issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    assert _error(lambda: call(request, metadata=stale)).code() == grpc.StatusCode.UNAUTHENTICATED  # expired
    for roles in [[], ["unknown-role"], *[[r] for r in roles_without]]:
        err = _error(lambda roles=roles: call(request, metadata=reg.md("mallory", roles)))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (roles, err.details())
        assert "lacks permission" in err.details()


def test_the_golden_path_from_report_to_allowed_prod_gates(reg, gov):
    ref = _register(reg)
    blocked = gov.CheckGates(pb.CheckGatesRequest(model=ref, environment=PROD), metadata=reg.md("dana", ["researcher"]))
    assert blocked.decision == gate_pb2.GATE_DECISION_BLOCKED
    failed = {g.gate for g in blocked.gates if g.status == gate_pb2.GATE_STATUS_FAILED}
    assert failed == {gate_pb2.GATE_VALIDATION, gate_pb2.GATE_APPROVALS, gate_pb2.GATE_PROMOTION_ORDER}
    reports = _validate(reg, gov, ref)
    gov.CreateApproval(_sign_request(reg, ref, TEST, reports["test"]), metadata=reg.md("rita", ["reviewer"]))
    signed = [
        gov.CreateApproval(_sign_request(reg, ref, PROD, reports["prod"]), metadata=reg.md(s, ["qa-approver"])).approval
        for s in ("quinn", "otto")
    ]
    allowed = gov.CheckGates(pb.CheckGatesRequest(model=ref, environment=PROD), metadata=reg.service_md("deployer"))
    assert allowed.decision == gate_pb2.GATE_DECISION_ALLOWED, allowed.gates
    assert list(allowed.approval_ids) == [a.approval_id for a in signed]
    assert allowed.validation_report_digest.hex == reports["prod"]
    assert allowed.artifact_digest.hex == _artifact(reg, ref)
    assert allowed.policy.policy_digest.hex == load_policies().get("prod").digest
    quinn = signed[0]
    assert (
        quinn.signer.subject == "quinn" and quinn.signer.kind == 1 and quinn.state == approval_pb2.APPROVAL_STATE_ACTIVE
    )
    assert quinn.statement.startswith("quinn (quinn) signed model tox version 1 for prod on ")
    assert quinn.record_digest.hex == _recomputed_digest(quinn, 10)
    event = reg.app.audit_log.get(seq=quinn.audit_sequence)
    assert (event.action, event.payload_digest, event.actor) == ("approval.sign", quinn.record_digest.hex, "quinn")
    assert reg.app.audit_log.verify().ok
    # The catalog shows validation status and finds versions validated for an environment.
    registry = reg_grpc.RegistryServiceStub(reg.channel)
    version = registry.GetModelVersion(reg_pb.GetModelVersionRequest(model=ref), metadata=reg.md("d", ["researcher"]))
    assert {(v.environment, v.verdict, v.report_digest.hex) for v in version.version.validations} == {
        (env, verdicts.VALIDATION_VERDICT_PASSED, reports[name])
        for name, env in (("dev", DEV), ("test", TEST), ("prod", PROD))
    }
    found = registry.SearchModelVersions(
        reg_pb.SearchModelVersionsRequest(validated_for=PROD), metadata=reg.md("d", ["researcher"])
    )
    assert [(v.ref.name, v.ref.version) for v in found.versions] == [("tox", 1)]


def test_self_approval_is_permission_denied(reg, gov):
    ref = _register(reg)
    reports = _validate(reg, gov, ref)
    alice = reg.md("alice", ["researcher", "qa-approver"], teams=[TEAM])
    err = _error(lambda: gov.CreateApproval(_sign_request(reg, ref, PROD, reports["prod"]), metadata=alice))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "separation of duties" in err.details()
    listed = gov.ListApprovals(pb.ListApprovalsRequest(model_name="tox"), metadata=alice)
    assert list(listed.approvals) == []


def test_a_stale_login_must_re_authenticate_to_sign(reg, gov):
    ref = _register(reg)
    reports = _validate(reg, gov, ref)
    head = reg.app.audit_log.head()
    stale = reg.md("quinn", ["qa-approver"], issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    err = _error(lambda: gov.CreateApproval(_sign_request(reg, ref, PROD, reports["prod"]), metadata=stale))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "re-authenticate" in err.details()
    assert reg.app.audit_log.head() == head
    assert gov.CreateApproval(_sign_request(reg, ref, PROD, reports["prod"]), metadata=reg.md("quinn", ["qa-approver"]))


def test_a_report_digest_mismatch_carries_a_digest_mismatch_detail(reg, gov):
    ref = _register(reg)
    request = _report_request(reg, ref, "prod")
    request.report_json += b"\n"
    head = reg.app.audit_log.head()
    err = _error(lambda: gov.RecordValidationReport(request, metadata=reg.service_md("validator")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "hashes to sha256:" in err.details()
    trailers = dict(err.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    detail = errors_pb2.DigestMismatch()
    assert status.details[0].Unpack(detail) and status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert detail.declared == request.report_digest
    assert detail.actual.hex == hashlib.sha256(request.report_json).hexdigest()
    assert detail.actual_size_bytes == len(request.report_json) and trailers["x-request-id"]
    assert reg.app.audit_log.head() == head


def _bad_requests(reg, ref, report_hex):
    sign = _sign_request(reg, ref, PROD, report_hex)
    yield "CreateApproval", pb.CreateApprovalRequest(reason="x")  # no model
    for field, value in (("meaning", 0), ("environment", 0), ("reason", ""), ("request_id", "r-1")):
        bad = pb.CreateApprovalRequest()
        bad.CopyFrom(sign)
        setattr(bad, field, value)
        yield "CreateApproval", bad
    upper = pb.CreateApprovalRequest()
    upper.CopyFrom(sign)
    upper.artifact_digest.hex = upper.artifact_digest.hex.upper()
    yield "CreateApproval", upper
    yield "RevokeApproval", pb.RevokeApprovalRequest(approval_id=str(uuid.uuid4()), reason="")
    yield "RecordValidationReport", _report_request(reg, ref, "prod", verdict=0)
    yield "RecordValidationReport", _report_request(reg, ref, "prod", policy_name="")
    yield "GetValidationReport", pb.GetValidationReportRequest(report_digest=digest_pb2.Digest(hex="abc"))
    yield "ListValidationReports", pb.ListValidationReportsRequest(model_name="tox", page_size=-1)
    yield "ListApprovals", pb.ListApprovalsRequest(model_name="tox", page_token="not-a-token")
    yield "GetEnvironmentPolicy", pb.GetEnvironmentPolicyRequest()
    yield "CheckGates", pb.CheckGatesRequest(model=model_pb2.ModelRef(name="tox", version=0), environment=PROD)
    yield "CheckGates", pb.CheckGatesRequest(model=ref)


def test_malformed_requests_are_invalid_argument_and_change_nothing(reg, gov):
    ref = _register(reg)
    reports = _validate(reg, gov, ref)
    head = reg.app.audit_log.head()
    people = {"RecordValidationReport": reg.service_md("validator")}
    for method, request in _bad_requests(reg, ref, reports["prod"]):
        metadata = people.get(method, reg.md("quinn", ["qa-approver"]))
        err = _error(
            lambda method=method, request=request, metadata=metadata: getattr(gov, method)(request, metadata=metadata)
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, request, err.details())
    assert reg.app.audit_log.head() == head


def test_revocation_reads_and_listing(reg, gov):
    ref = _register(reg)
    reports = _validate(reg, gov, ref)
    quinn = reg.md("quinn", ["qa-approver"])
    approval = gov.CreateApproval(
        _sign_request(reg, ref, PROD, reports["prod"], request_id=str(uuid.uuid4())), metadata=quinn
    ).approval
    revoked = gov.RevokeApproval(
        pb.RevokeApprovalRequest(approval_id=approval.approval_id, reason="wrong SOP"),
        metadata=reg.md("otto", ["qa-approver"]),
    )
    assert revoked.approval.state == approval_pb2.APPROVAL_STATE_REVOKED
    assert revoked.revocation.revoker.subject == "otto"
    assert revoked.revocation.approval_record_digest == approval.record_digest
    assert revoked.revocation.record_digest.hex == _recomputed_digest(revoked.revocation, 6)
    got = gov.GetApproval(pb.GetApprovalRequest(approval_id=approval.approval_id), metadata=quinn).approval
    assert got == revoked.approval and got.revocation == revoked.revocation
    unchanged = approval_pb2.Approval()
    unchanged.CopyFrom(got)
    unchanged.ClearField("state")
    unchanged.ClearField("revocation")
    approval.ClearField("state")
    assert unchanged == approval  # the signed approval itself never changes
    again = _error(
        lambda: gov.RevokeApproval(
            pb.RevokeApprovalRequest(approval_id=approval.approval_id, reason="again"), metadata=quinn
        )
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = gov.ListApprovals(
        pb.ListApprovalsRequest(model_name="tox", state=approval_pb2.APPROVAL_STATE_ACTIVE), metadata=quinn
    )
    assert list(listed.approvals) == []
    report = gov.GetValidationReport(
        pb.GetValidationReportRequest(report_digest=_digest(reports["prod"])), metadata=quinn
    ).record
    assert hashlib.sha256(report.report_json).hexdigest() == reports["prod"]
    assert report.recorded_by.subject == "service:validator"
    page = gov.ListValidationReports(pb.ListValidationReportsRequest(model_name="tox", page_size=2), metadata=quinn)
    assert [r.policy_name for r in page.records] == ["prod", "test"] and page.next_page_token
    assert all(r.report_json == b"" for r in page.records)
    missing = _error(lambda: gov.GetApproval(pb.GetApprovalRequest(approval_id=str(uuid.uuid4())), metadata=quinn))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


def test_environment_policies(reg, gov):
    md = reg.md("dana", ["researcher"])
    policies = gov.ListEnvironmentPolicies(pb.ListEnvironmentPoliciesRequest(), metadata=md).policies
    assert [p.environment for p in policies] == [DEV, TEST, PROD]
    assert not policies[0].HasField("approvals") and policies[0].validation.policy_name == "dev"
    prod = gov.GetEnvironmentPolicy(pb.GetEnvironmentPolicyRequest(environment=PROD), metadata=md).policy
    assert prod == policies[2]
    assert (prod.approvals.min_approvals, list(prod.approvals.approver_roles)) == (2, ["qa-approver"])
    assert prod.requires_environment == TEST and len(prod.policy_digest.hex) == 64


def test_a_bad_policies_file_stops_the_start(tmp_path):
    bad = tmp_path / "policies.yaml"
    bad.write_text("environments:\n  prod:\n    approvals: {min_approvals: many}\n")
    with pytest.raises(PolicyFileError, match=f"{bad}:3: "), registry_harness(tmp_path, POLICIES_FILE=str(bad)):
        pass


def test_a_gate_failure_detail_reaches_the_client():
    """What callers refusing an action send: FAILED_PRECONDITION with GateFailure in the trailer."""
    check = GateCheck(
        "tox",
        3,
        "prod",
        load_policies().get("prod"),
        (
            GateResult("APPROVALS", "FAILED", "1 of 2 approvals", ("a1",)),
            GateResult("VERSION_ACTIVE", "PASSED", "ready"),
        ),
        "a" * 64,
        "",
        (),
        dt.datetime.now(dt.UTC),
    )

    def refuse(request, context):
        context.abort_with_status(rich_status(grpc.StatusCode.FAILED_PRECONDITION, "blocked", gate_failure(check)))

    handler = grpc.method_handlers_generic_handler("t.Gate", {"Do": grpc.unary_unary_rpc_method_handler(refuse)})
    binding = ServiceBinding("t.Gate", lambda server: server.add_generic_rpc_handlers((handler,)))
    with running_server([binding]) as server, channel_to(server) as channel:
        do: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.Gate/Do")
        err = _error(lambda: do(b""))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and err.details() == "blocked"
    status = rich_status_of(err)
    detail = errors_pb2.GateFailure()
    assert status.details[0].Unpack(detail)
    assert (detail.model.name, detail.model.version, detail.environment) == ("tox", 3, PROD)
    assert [(g.gate, g.message, list(g.evidence)) for g in detail.failed_gates] == [
        (gate_pb2.GATE_APPROVALS, "1 of 2 approvals", ["a1"])
    ]
    assert json.loads(json.dumps(json_format.MessageToDict(detail)))  # valid proto3 JSON too
