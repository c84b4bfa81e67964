"""Approvals as 21 CFR Part 11 e-signatures: signer, re-authentication, separation of duties, binding,
idempotency, revocation by a new signed record."""

import dataclasses
import uuid

import pytest

from libs.audit.events import canonical_json
from libs.errors.domain_errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from services.registry.domain.governance_records import REJECTED, REVIEWED, sha256_hex
from services.registry.domain.policies import parse_policies
from services.registry.tests.governance_world import ISSUER, START, make_world

ALLOW_SUBMITTER = """
environments:
  prod:
    validation: {policy: prod}
    approvals: {min_approvals: 1, approver_roles: [qa-approver], submitter_rule: allowed}
"""


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.version("tox", 1, created_by="alice")
    w.validate_all("tox", 1)
    return w


def _nothing_signed(world) -> bool:
    return world.events("approval.sign") == [] and world.governance.approvals.list("tox", 0, "", "", 0, "") == ([], "")


def test_a_signature_records_who_when_what_why_and_the_bound_digests(world):
    quinn = world.person("quinn", "qa-approver", name="Quinn Roe")
    world.clock.advance(seconds=0.75)  # sub-second server time: the signature carries whole seconds
    approval = world.sign(quinn, reason="golden set AUC 0.91 >= 0.90")
    report = world.governance.reports.current_passed("tox", 1, "prod")
    assert approval.signer.subject == "quinn" and approval.signer.display_name == "Quinn Roe"
    assert approval.signer.roles == ("qa-approver",) and approval.signer.issuer == ISSUER
    assert approval.signer.kind == "user"
    assert approval.sign_time == START and approval.state == "ACTIVE"
    assert approval.artifact_digest == world.catalog.get_version("tox", 1).artifact_digest
    assert approval.report_digest == report.report_digest
    assert approval.statement == (
        "Quinn Roe (quinn) signed model tox version 1 for prod on 2026-11-02T09:30:00Z meaning approved for "
        "release: golden set AUC 0.91 >= 0.90"
    )
    assert approval.record_digest == sha256_hex(canonical_json(approval.signed_fields()))
    [event] = world.events("approval.sign")
    assert (event.seq, event.payload_digest, event.actor) == (approval.audit_sequence, approval.record_digest, "quinn")
    assert event.subject == f"models/tox/versions/1/approvals/{approval.approval_id}"
    assert event.details["statement"] == approval.statement
    assert world.governance.approvals.get(approval.approval_id) == approval


def test_the_submitter_cannot_approve_their_own_version(world):
    alice = world.person("alice", "researcher", "qa-approver")
    with pytest.raises(PermissionDenied, match="separation of duties: alice registered models/tox/versions/1"):
        world.sign(alice)
    with pytest.raises(PermissionDenied, match="separation of duties"):
        world.sign(alice, meaning=REVIEWED, environment="test")
    assert _nothing_signed(world)


def test_the_submitter_may_sign_where_the_policy_allows_it(tmp_path, world):
    relaxed = world.with_policies(parse_policies(ALLOW_SUBMITTER, "allow.yaml"))
    approval = relaxed.sign(world.person("alice", "qa-approver"))
    assert approval.signer.subject == "alice"


def test_signing_needs_a_recent_sign_in(world):
    stale = world.person("quinn", "qa-approver", age_minutes=5.5)
    with pytest.raises(Unauthenticated, match="re-authenticate") as err:
        world.sign(stale)
    assert "within the last 5 minutes" in err.value.message and "6 minutes old" in err.value.message
    assert _nothing_signed(world)
    assert world.sign(world.person("quinn", "qa-approver", age_minutes=4.9)).signer.subject == "quinn"


def test_services_and_people_without_an_approver_role_cannot_sign(world):
    with pytest.raises(PermissionDenied, match="only a person can sign"):
        world.sign(world.service("deployer"))
    with pytest.raises(PermissionDenied, match="none of the roles that may sign for prod"):
        world.sign(world.person("rita", "reviewer"))
    assert world.sign(world.person("rita", "reviewer"), environment="test").environment == "test"


@pytest.mark.parametrize(
    "overrides",
    [
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 2001},
        {"reason": "bell\x07"},
        {"meaning": ""},
        {"meaning": "APPROVED"},
        {"environment": ""},
        {"environment": "staging"},
        {"model_name": "Tox"},
        {"version": 0},
        {"artifact_digest": ""},
        {"artifact_digest": "sha256:" + "0" * 64},
        {"report_digest": "zz"},
        {"request_id": "not-a-uuid"},
    ],
)
def test_malformed_requests_are_invalid_and_change_nothing(world, overrides):
    quinn = world.person("quinn", "qa-approver")
    with pytest.raises(InvalidArgument):
        world.governance.approvals.create(quinn, dataclasses.replace(world.sign_request(), **overrides))
    assert _nothing_signed(world)


def test_what_was_shown_must_be_what_is_current(world):
    quinn = world.person("quinn", "qa-approver")
    with pytest.raises(FailedPrecondition, match="is not the artifact of models/tox/versions/1"):
        world.sign(quinn, artifact_digest="a" * 64)
    old = world.governance.reports.current_passed("tox", 1, "prod").report_digest
    world.clock.advance(minutes=1)
    world.report("tox", 1, "prod")  # a newer PASSED report supersedes the one shown
    with pytest.raises(FailedPrecondition, match="not the latest PASSED report"):
        world.sign(quinn, report_digest=old)
    with pytest.raises(FailedPrecondition, match="not the latest PASSED report"):
        world.sign(quinn, report_digest="")
    world.report("tox", 1, "prod", verdict="FAILED")
    with pytest.raises(FailedPrecondition, match=r"requires a PASSED validation.*the latest is FAILED"):
        world.sign(quinn)
    assert _nothing_signed(world)


def test_unvalidated_unknown_and_archived_versions_cannot_be_signed(world):
    quinn = world.person("quinn", "qa-approver")
    world.version("tox", 2)
    with pytest.raises(FailedPrecondition, match="none was recorded"):
        world.sign(quinn, version=2)
    with pytest.raises(NotFound):
        world.governance.approvals.create(quinn, dataclasses.replace(world.sign_request(), version=3))
    world.catalog.archive("tox", 1)
    with pytest.raises(FailedPrecondition, match="archived"):
        world.sign(quinn)
    assert _nothing_signed(world)


def test_one_active_signature_per_signer_meaning_and_report(world):
    quinn = world.person("quinn", "qa-approver")
    first = world.sign(quinn)
    with pytest.raises(AlreadyExists, match=f"approval {first.approval_id}"):
        world.sign(quinn)
    world.sign(quinn, meaning=REVIEWED)  # another meaning is another signature
    world.clock.advance(minutes=1)
    world.report("tox", 1, "prod")  # after a new PASSED report the old signature no longer counts...
    fresh = world.person("quinn", "qa-approver")
    assert world.sign(fresh).approval_id != first.approval_id  # ...so the signer can sign the new one


def test_a_retry_with_the_same_request_id_returns_the_first_signature(world):
    quinn = world.person("quinn", "qa-approver")
    request_id = str(uuid.uuid4())
    first = world.sign(quinn, request_id=request_id)
    world.clock.advance(minutes=10)  # a retry after the signing window still just returns the record
    assert world.sign(world.person("quinn", "qa-approver", age_minutes=11), request_id=request_id) == first
    assert len(world.events("approval.sign")) == 1
    with pytest.raises(AlreadyExists, match="different approval request"):
        world.sign(quinn, request_id=request_id, reason="another reason")
    with pytest.raises(AlreadyExists, match="different approval request"):
        world.sign(world.person("otto", "qa-approver"), request_id=request_id)


def test_revocation_is_a_new_signed_record_and_the_approval_stays_as_signed(world):
    quinn = world.person("quinn", "qa-approver")
    approval = world.sign(quinn)
    world.clock.advance(minutes=2)
    otto = world.person("otto", "qa-approver", name="Otto Kay")
    revoked = world.governance.approvals.revoke(otto, approval.approval_id, "signed against the wrong SOP")
    rev = revoked.revocation
    assert revoked.state == "REVOKED" and dataclasses.replace(revoked, revocation=None) == approval
    assert rev.revoker.subject == "otto" and rev.reason == "signed against the wrong SOP"
    assert rev.approval_record_digest == approval.record_digest
    assert rev.record_digest == sha256_hex(canonical_json(rev.signed_fields()))
    [event] = world.events("approval.revoke")
    assert (event.seq, event.payload_digest) == (rev.audit_sequence, rev.record_digest)
    assert world.governance.approvals.get(approval.approval_id) == revoked
    with pytest.raises(FailedPrecondition, match="already revoked by otto"):
        world.governance.approvals.revoke(quinn, approval.approval_id, "again")
    assert world.sign(quinn).approval_id != approval.approval_id  # a revoked signature is no duplicate


def test_who_may_revoke_and_how(world):
    approval = world.sign(world.person("quinn", "qa-approver"))
    revoke = world.governance.approvals.revoke
    with pytest.raises(PermissionDenied, match="neither signed"):
        revoke(world.person("rita", "reviewer"), approval.approval_id, "no")
    with pytest.raises(PermissionDenied, match="only a person"):
        revoke(world.service("deployer"), approval.approval_id, "no")
    with pytest.raises(Unauthenticated, match="re-authenticate"):
        revoke(world.person("quinn", "qa-approver", age_minutes=30), approval.approval_id, "mine")
    with pytest.raises(InvalidArgument, match="reason is required"):
        revoke(world.person("quinn", "qa-approver"), approval.approval_id, " ")
    with pytest.raises(InvalidArgument, match="approval_id"):
        revoke(world.person("quinn", "qa-approver"), "42", "mine")
    with pytest.raises(NotFound):
        revoke(world.person("quinn", "qa-approver"), str(uuid.uuid4()), "mine")
    assert world.events("approval.revoke") == []
    request_id = str(uuid.uuid4())
    done = revoke(world.person("quinn", "qa-approver"), approval.approval_id, "mine", request_id)
    assert revoke(world.person("quinn", "qa-approver"), approval.approval_id, "mine", request_id) == done
    with pytest.raises(AlreadyExists):
        revoke(world.person("quinn", "qa-approver"), approval.approval_id, "other", request_id)
    assert len(world.events("approval.revoke")) == 1


def test_listing_filters_by_state_and_environment_and_pages(world):
    signers = [world.person(f"qa{i}", "qa-approver") for i in range(3)]
    made = [world.sign(p) for p in signers] + [world.sign(signers[0], environment="test", meaning=REJECTED)]
    world.governance.approvals.revoke(signers[1], made[1].approval_id, "oops")
    approvals = world.governance.approvals
    page, token = approvals.list("tox", 1, "", "", 3, "")
    assert [a.approval_id for a in page] == [a.approval_id for a in made[:3]] and token
    rest, end = approvals.list("tox", 1, "", "", 3, token)
    assert [a.approval_id for a in rest] == [made[3].approval_id] and end == ""
    assert [a.approval_id for a in approvals.list("tox", 0, "prod", "ACTIVE", 0, "")[0]] == [
        made[0].approval_id,
        made[2].approval_id,
    ]
    assert [a.state for a in approvals.list("tox", 0, "", "REVOKED", 0, "")[0]] == ["REVOKED"]
    with pytest.raises(InvalidArgument, match="different query"):
        approvals.list("tox", 1, "prod", "", 3, token)
    with pytest.raises(NotFound):
        approvals.list("nope", 0, "", "", 0, "")


def test_a_replica_losing_a_race_records_the_failure_and_returns_the_winners_signature(world):
    """Two replicas sign the same request at once: one row is stored, and the chain says what happened."""
    replica = world.with_policies(world.governance.policies)  # same database, its own process lock
    request_id = str(uuid.uuid4())
    insert = world.store.insert_approval
    winner = []

    def insert_after_the_other_replica(approval):
        world.store.insert_approval = insert
        winner.append(replica.sign(replica.person("quinn", "qa-approver"), request_id=request_id))
        insert(approval)

    world.store.insert_approval = insert_after_the_other_replica
    returned = world.sign(world.person("quinn", "qa-approver"), request_id=request_id)
    assert returned == winner[0]
    outcomes = [(e.outcome, e.payload_digest == winner[0].record_digest) for e in world.events("approval.sign")]
    assert outcomes == [("success", False), ("success", True), ("failure", False)]
    assert [a.approval_id for a in world.governance.approvals.list("tox", 1, "", "", 0, "")[0]] == [
        winner[0].approval_id
    ]
