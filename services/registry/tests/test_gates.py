"""Gate checks: every gate evaluated, with messages and evidence, for dev, test and prod."""

import pytest

from libs.errors.domain_errors import InvalidArgument, NotFound
from services.registry.domain.governance_records import REJECTED, REVIEWED, GatesBlocked
from services.registry.domain.policies import parse_policies
from services.registry.tests.governance_world import make_world

ORDER = ["VERSION_ACTIVE", "ARTIFACT_PRESENT", "VALIDATION", "APPROVALS", "SEPARATION_OF_DUTIES", "PROMOTION_ORDER"]


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.version("tox", 1, created_by="alice")
    return w


def _status(check) -> dict[str, str]:
    return {g.gate: g.status for g in check.gates}


def _gate(check, name):
    return next(g for g in check.gates if g.gate == name)


def _approve_test_and_prod(world):
    world.sign(world.person("rita", "reviewer"), environment="test")
    return [world.sign(world.person(s, "qa-approver")) for s in ("quinn", "otto")]


def test_a_new_version_is_blocked_everywhere_until_validated(world):
    check = world.governance.check_gates("tox", 1, "dev")
    assert [g.gate for g in check.gates] == ORDER and not check.allowed
    assert _status(check) == {
        "VERSION_ACTIVE": "PASSED",
        "ARTIFACT_PRESENT": "PASSED",
        "VALIDATION": "FAILED",
        "APPROVALS": "NOT_REQUIRED",
        "SEPARATION_OF_DUTIES": "NOT_REQUIRED",
        "PROMOTION_ORDER": "NOT_REQUIRED",
    }
    assert check.message == "VALIDATION: no validation report under policy 'dev' yet"
    report = world.report("tox", 1, "dev")
    check = world.governance.check_gates("tox", 1, "dev")
    assert check.allowed and check.report_digest == report.report_digest
    assert _gate(check, "VALIDATION").evidence == (f"sha256:{report.report_digest}",)
    assert (
        check.policy.environment == "dev"
        and check.artifact_digest == world.catalog.get_version("tox", 1).artifact_digest
    )


def test_prod_needs_its_validation_two_qa_approvals_and_the_test_gates(world):
    digests = world.validate_all()
    check = world.governance.check_gates("tox", 1, "prod")
    assert _status(check)["APPROVALS"] == "FAILED" and _status(check)["PROMOTION_ORDER"] == "FAILED"
    assert _gate(check, "APPROVALS").message.startswith("0 of 2 approvals by role qa-approver bound to artifact")
    assert "must first pass the test gates: APPROVALS: 0 of 1 approval" in _gate(check, "PROMOTION_ORDER").message
    quinn, otto = _approve_test_and_prod(world)
    check = world.governance.check_gates("tox", 1, "prod")
    assert check.allowed, check.message
    assert check.approval_ids == (quinn.approval_id, otto.approval_id)
    assert _gate(check, "APPROVALS").message == "2 of 2 approvals by role qa-approver"
    assert _gate(check, "SEPARATION_OF_DUTIES").status == "PASSED"
    assert check.report_digest == digests["prod"]
    assert f"sha256:{digests['test']}" in _gate(check, "PROMOTION_ORDER").evidence
    assert world.governance.require_gates("tox", 1, "prod") == check


def test_only_eligible_distinct_current_approvals_count(world):
    world.validate_all()
    world.sign(world.person("rita", "reviewer"), environment="test")
    world.sign(world.person("quinn", "qa-approver"), meaning=REVIEWED)  # a review is not an approval
    world.sign(world.person("quinn", "qa-approver"))
    relaxed = world.with_policies(
        parse_policies(
            "environments:\n  prod:\n    validation: {policy: prod}\n"
            "    approvals: {min_approvals: 1, approver_roles: [reviewer, qa-approver]}\n",
            "relaxed.yaml",
        )
    )
    relaxed.sign(relaxed.person("rita", "reviewer"))  # a reviewer's approval under another policy
    check = world.governance.check_gates("tox", 1, "prod")
    assert _gate(check, "APPROVALS").message.startswith("1 of 2 approvals")
    world.clock.advance(minutes=1)
    world.report("tox", 1, "prod")  # a newer PASSED report: approvals bound to the old one stop counting
    check = world.governance.check_gates("tox", 1, "prod")
    assert _gate(check, "APPROVALS").message.startswith("0 of 2 approvals") and check.approval_ids == ()


def test_a_newer_failed_report_blocks_and_unbinds_approvals(world):
    world.validate_all()
    _approve_test_and_prod(world)
    world.clock.advance(minutes=1)
    failed = world.report("tox", 1, "prod", verdict="FAILED")
    check = world.governance.check_gates("tox", 1, "prod")
    validation = _gate(check, "VALIDATION")
    assert validation.status == "FAILED" and f"is FAILED (run {failed.run_id})" in validation.message
    assert validation.evidence == (f"sha256:{failed.report_digest}",)
    assert "there is none" in _gate(check, "APPROVALS").message and check.report_digest == ""


def test_an_active_rejection_blocks_until_revoked(world):
    world.validate_all()
    _approve_test_and_prod(world)
    veto = world.sign(world.person("vera", "qa-approver"), meaning=REJECTED, reason="drift on site B")
    check = world.governance.check_gates("tox", 1, "prod")
    approvals = _gate(check, "APPROVALS")
    assert approvals.status == "FAILED" and "rejected for prod by vera" in approvals.message
    assert approvals.evidence == (veto.approval_id,)
    dev_veto = world.sign(world.person("vera", "qa-approver"), environment="dev", meaning=REJECTED)
    assert not world.governance.check_gates("tox", 1, "dev").allowed  # even where no approval is needed
    world.governance.approvals.revoke(world.person("vera", "qa-approver"), veto.approval_id, "fixed")
    world.governance.approvals.revoke(world.person("vera", "qa-approver"), dev_veto.approval_id, "fixed")
    assert world.governance.check_gates("tox", 1, "prod").allowed


def test_revoked_approvals_do_not_count(world):
    world.validate_all()
    quinn, _ = _approve_test_and_prod(world)
    world.governance.approvals.revoke(world.person("quinn", "qa-approver"), quinn.approval_id, "mistake")
    check = world.governance.check_gates("tox", 1, "prod")
    assert _gate(check, "APPROVALS").message.startswith("1 of 2") and quinn.approval_id not in check.approval_ids


def test_archived_versions_and_missing_artifacts_fail_their_gates(world):
    world.validate_all()
    record = world.catalog.get_version("tox", 1)
    world.artifacts.discard(record.artifact_digest)
    world.catalog.archive("tox", 1)
    check = world.governance.check_gates("tox", 1, "dev")
    assert _status(check)["VERSION_ACTIVE"] == "FAILED" and "archived" in _gate(check, "VERSION_ACTIVE").message
    assert (
        _gate(check, "ARTIFACT_PRESENT").message == f"artifact sha256:{record.artifact_digest} is missing from "
        "the artifact store"
    )
    with pytest.raises(GatesBlocked) as err:
        world.governance.require_gates("tox", 1, "dev")
    assert err.value.status == "FAILED_PRECONDITION" and [g.gate for g in err.value.check.failed] == [
        "VERSION_ACTIVE",
        "ARTIFACT_PRESENT",
    ]


def test_an_approval_by_the_submitter_fails_separation_of_duties(world):
    world.validate_all()
    allowed = world.with_policies(
        parse_policies(
            "environments:\n  prod:\n    validation: {policy: prod}\n"
            "    approvals: {min_approvals: 1, approver_roles: [qa-approver], submitter_rule: allowed}\n",
            "old.yaml",
        )
    )
    own = allowed.sign(allowed.person("alice", "qa-approver"))  # signed while the policy allowed it
    assert allowed.governance.check_gates("tox", 1, "prod").allowed
    check = world.governance.check_gates("tox", 1, "prod")  # the default policy excludes submitters
    sod = _gate(check, "SEPARATION_OF_DUTIES")
    assert sod.status == "FAILED" and sod.evidence == (own.approval_id,)
    assert "the submitter alice approved their own version" in sod.message
    assert own.approval_id not in check.approval_ids


def test_unknown_versions_and_environments(tmp_path, world):
    with pytest.raises(NotFound):
        world.governance.check_gates("tox", 2, "dev")
    with pytest.raises(InvalidArgument):
        world.governance.check_gates("tox", 0, "dev")
    with pytest.raises(InvalidArgument):
        world.governance.check_gates("tox", 1, "")
    dev_only = world.with_policies(parse_policies("environments:\n  dev: {}\n", "dev.yaml"))
    with pytest.raises(NotFound, match="prod has no policy"):
        dev_only.governance.check_gates("tox", 1, "prod")
    assert dev_only.governance.check_gates("tox", 1, "dev").allowed  # nothing required at all
