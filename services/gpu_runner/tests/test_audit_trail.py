"""AuditTrail: who and which request an event belongs to, and a broken recorder never hides it."""

import datetime as dt
import json
import logging

from libs.audit.local_outbox import LocalOutbox
from libs.auth import principal as principal_ctx
from libs.auth.principal import Principal
from libs.telemetry import context as reqctx
from services.gpu_runner.domain.audit_trail import AuditTrail, model_subject


def test_events_carry_the_verified_caller_and_the_request_and_reach_the_outbox(tmp_path):
    outbox = LocalOutbox(tmp_path / "outbox.sqlite")
    trail = AuditTrail(outbox.record)
    now = dt.datetime.now(dt.UTC)
    caller = Principal("alice", frozenset({"release-manager"}), now, now + dt.timedelta(hours=1), name="Alice")
    p_token = principal_ctx.activate(caller)
    r_token = reqctx.activate(reqctx.RequestContext(request_id="req-9", trace_id="trace-9"))
    try:
        trail.record("model.unload", model_subject("fraud", 3), "model unloaded", reason="retired", ignored=None)
    finally:
        reqctx.deactivate(r_token)
        principal_ctx.deactivate(p_token)
    trail.record("model.evict", model_subject("fraud", 2), "model evicted", outcome="SUCCESS")  # the runner's own
    (_, first), (_, second) = outbox.pending_events()
    assert (first.action, first.subject, first.outcome) == ("model.unload", "models/fraud/versions/3", "SUCCESS")
    assert (first.actor_subject, first.actor_kind, first.actor_name) == ("alice", "user", "Alice")
    assert first.actor_roles == ("release-manager",)
    assert (first.request_id, first.trace_id) == ("req-9", "trace-9")
    assert first.details == {"reason": "retired"}
    assert second.actor_subject == "" and second.request_id == ""


def test_a_failing_recorder_is_logged_and_the_log_line_still_carries_the_event(caplog):
    def broken(event):
        raise OSError("disk full")

    trail = AuditTrail(broken)
    with caplog.at_level(logging.INFO, logger="causeway.audit"):
        trail.record("model.load", model_subject("m", 1), "model load refused: gates", outcome="FAILURE", reason="x")
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, "model load refused: gates") in messages
    assert any(r.levelno == logging.ERROR and "not recorded" in r.getMessage() for r in caplog.records)
    line = next(r for r in caplog.records if r.getMessage() == "model load refused: gates")
    assert line.action == "model.load" and line.outcome == "FAILURE" and json.dumps(line.reason) == '"x"'
