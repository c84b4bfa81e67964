"""Validation reports: who may record them, what is checked, idempotency, and validation status."""

import dataclasses
import hashlib

import pytest

from libs.errors.domain_errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.registry.domain.governance_records import ReportDigestMismatch
from services.registry.domain.policies import parse_policies
from services.registry.tests.governance_world import make_world


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    w.version("tox", 1)
    return w


def test_a_report_is_recorded_with_its_audit_event(world):
    submission = world.submission("tox", 1, "prod", environment="prod")
    report = world.governance.reports.record(world.service(), submission)
    assert report.recorded_by.subject == "service:validator" and report.recorded_by.kind == "service"
    [event] = world.events("validation_report.record")
    assert event.seq == report.audit_sequence
    assert event.payload_digest == submission.report_digest
    assert event.subject == f"models/tox/versions/1/validation-reports/{submission.report_digest}"
    assert event.details["run_id"] == submission.run_id and event.details["verdict"] == "PASSED"
    stored = world.governance.reports.get(submission.report_digest)
    assert stored.report_json == submission.report_json and stored.environment == "prod"


def test_only_services_record_reports(world):
    person = world.person("quinn", "qa-approver", "platform-admin")
    with pytest.raises(PermissionDenied, match="only by the validator service"):
        world.governance.reports.record(person, world.submission("tox", 1, "prod"))
    assert world.events() == []


def test_report_bytes_must_hash_to_the_declared_digest(world):
    submission = world.submission("tox", 1, "prod")
    tampered = dataclasses.replace(submission, report_json=submission.report_json + b" ")
    with pytest.raises(ReportDigestMismatch) as err:
        world.governance.reports.record(world.service(), tampered)
    assert err.value.status == "INVALID_ARGUMENT"
    assert err.value.declared == submission.report_digest
    assert err.value.actual == hashlib.sha256(tampered.report_json).hexdigest()
    assert world.events() == [] and world.governance.reports.latest("tox", 1, "prod") is None


def test_the_artifact_must_be_the_versions(world):
    with pytest.raises(FailedPrecondition, match="validate the version's own artifact"):
        world.governance.reports.record(world.service(), world.submission("tox", 1, "prod", artifact_digest="a" * 64))
    with pytest.raises(NotFound):
        world.governance.reports.record(world.service(), world.submission("tox", 1, "prod", version=2))
    assert world.events() == []


def test_re_recording_the_same_run_is_a_no_op(world):
    submission = world.submission("tox", 1, "prod", run_id="run-1")
    first = world.governance.reports.record(world.service(), submission)
    world.clock.advance(minutes=3)
    again = world.governance.reports.record(world.service(), submission)
    assert again == first
    assert len(world.events("validation_report.record")) == 1


def test_different_content_for_a_recorded_run_is_already_exists(world):
    world.report("tox", 1, "prod", run_id="run-1")
    with pytest.raises(AlreadyExists, match="run-1 is already recorded"):
        world.report("tox", 1, "prod", verdict="FAILED", run_id="run-1")
    with pytest.raises(AlreadyExists):  # the same bytes under another run id
        first = world.governance.reports.get(world.governance.reports.latest("tox", 1, "prod").report_digest)
        world.governance.reports.record(
            world.service(),
            world.submission(
                "tox", 1, "prod", run_id="run-2", report_json=first.report_json, report_digest=first.report_digest
            ),
        )
    assert len(world.events("validation_report.record")) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"model_name": "Tox!"},
        {"version": 0},
        {"artifact_digest": "sha256:" + "a" * 64},
        {"policy_name": ""},
        {"policy_digest": "xyz"},
        {"environment": "staging"},
        {"run_id": ""},
        {"run_id": "run id with spaces"},
        {"verdict": ""},
        {"verdict": "MAYBE"},
        {"report_json": b"", "report_digest": hashlib.sha256(b"").hexdigest()},
        {"report_digest": "A" * 64},
    ],
)
def test_malformed_submissions_are_invalid_and_change_nothing(world, overrides):
    with pytest.raises(InvalidArgument):
        world.governance.reports.record(world.service(), world.submission("tox", 1, "prod", **overrides))
    assert world.events() == []
    assert world.governance.reports.list("tox", 0, "", "", 0, "") == ([], "")


def test_status_is_the_latest_report_under_the_environment_policy(world):
    reports = world.governance.reports
    passed = world.report("tox", 1, "prod")
    assert reports.current_passed("tox", 1, "prod") == dataclasses.replace(passed, report_json=b"")
    world.clock.advance(minutes=1)
    failed = world.report("tox", 1, "prod", verdict="FAILED")
    assert reports.current_passed("tox", 1, "prod") is None
    assert reports.latest("tox", 1, "prod").report_digest == failed.report_digest
    world.report("tox", 1, "dev", verdict="ERROR")
    statuses = {s.environment: s for s in world.governance.latest_validations("tox", 1)}
    assert (statuses["prod"].verdict, statuses["prod"].report_digest) == ("FAILED", failed.report_digest)
    assert statuses["dev"].verdict == "ERROR" and statuses["test"].verdict == ""
    assert statuses["test"].record_time is None and statuses["prod"].policy_name == "prod"
    rerun = world.report("tox", 1, "prod")
    assert reports.current_passed("tox", 1, "prod").report_digest == rerun.report_digest


def test_versions_validated_for_uses_each_versions_latest_report(world):
    world.version("tox", 2)
    world.version("hep", 1)
    world.report("tox", 1, "test")
    world.report("tox", 2, "test")
    world.report("tox", 2, "test", verdict="FAILED")
    world.report("hep", 1, "test")
    world.report("hep", 1, "prod", verdict="FAILED")
    assert world.governance.versions_validated_for("test") == {("tox", 1), ("hep", 1)}
    assert world.governance.versions_validated_for("test", "tox") == {("tox", 1)}
    assert world.governance.versions_validated_for("prod") == set()


def test_validated_for_an_environment_without_validation_is_invalid(tmp_path):
    w = make_world(tmp_path, parse_policies("environments:\n  dev: {}\n", "p.yaml"))
    with pytest.raises(InvalidArgument, match="requires no validation"):
        w.governance.versions_validated_for("dev")
    with pytest.raises(NotFound):
        w.governance.versions_validated_for("prod")
    assert w.governance.latest_validations("tox", 1) == []


def test_listing_is_newest_first_and_paged_with_bound_tokens(world):
    world.version("tox", 2)
    recorded = [world.report("tox", 1 + i % 2, "prod" if i < 4 else "dev").report_digest for i in range(5)]
    reports = world.governance.reports
    page, token = reports.list("tox", 0, "", "", 2, "")
    assert [r.report_digest for r in page] == recorded[::-1][:2] and token
    assert all(r.report_json == b"" for r in page)
    rest, last = reports.list("tox", 0, "", "", 2, token)
    tail, end = reports.list("tox", 0, "", "", 2, last)
    assert [r.report_digest for r in rest + tail] == recorded[::-1][2:] and end == ""
    assert [r.report_digest for r in reports.list("tox", 2, "prod", "", 0, "")[0]] == [recorded[3], recorded[1]]
    assert reports.list("tox", 0, "", "FAILED", 0, "") == ([], "")
    with pytest.raises(InvalidArgument, match="different query"):
        reports.list("tox", 1, "", "", 2, token)
    with pytest.raises(InvalidArgument, match="malformed"):
        reports.list("tox", 0, "", "", 2, "garbage!")
    with pytest.raises(InvalidArgument, match="negative"):
        reports.list("tox", 0, "", "", -1, "")
    with pytest.raises(NotFound):
        reports.list("nope", 0, "", "", 0, "")
    with pytest.raises(NotFound):
        reports.get("f" * 64)
    with pytest.raises(InvalidArgument):
        reports.get("not-a-digest")
