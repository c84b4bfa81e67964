"""The sqlite run store: idempotent creation, events in order, paging keys, restart recovery."""

import datetime as dt

from services.validator.domain import runs as r
from services.validator.storage.sql_store import SqlRunStore, create_engine


def _run(run_id: str, request_id: str, minute: int, state: str = r.QUEUED) -> r.Run:
    return r.Run(
        run_id=run_id,
        request_id=request_id,
        request_fingerprint="f",
        model_name="tox21",
        version=1,
        artifact_digest="a" * 64,
        format="torchscript",
        policy_name="dev",
        policy_digest="b" * 64,
        environment="",
        champion=("tox21", 7),
        state=state,
        checks=[r.CheckProgress("digest", "DIGEST_MATCH")],
        requested_by=r.Actor("alice", roles=("researcher",), teams=("onc",)),
        create_time=dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.UTC),
    )


def test_runs_events_reports_and_paging(tmp_path):
    store = SqlRunStore(create_engine(f"sqlite:///{tmp_path / 'v.db'}"))
    first = store.create(_run("r1", "q1", 1))
    assert store.create(_run("r9", "q1", 2)).run_id == "r1"  # same request id: the stored run
    assert store.get("r1") == first
    first.state, first.checks[0].phase = r.RUNNING, r.DONE
    store.save(first)
    saved = store.get("r1")
    assert saved is not None and saved.checks[0].phase == r.DONE
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store.append_event("r1", t, r.EVENT_STATE, {"state": "QUEUED"})
    store.append_event("r1", t, r.EVENT_STATE, {"state": "RUNNING"})
    assert [e.sequence for e in store.events("r1", 0)] == [1, 2]
    assert [e.data["state"] for e in store.events("r1", 1)] == ["RUNNING"]
    store.save_report("r1", b"{}", "c" * 64)
    assert store.report("r1") == b"{}"
    for i in range(2, 6):
        store.create(_run(f"r{i}", f"q{i}", i, state=r.COMPLETED))
    page = store.list(r.RunFilter(model_name="tox21"), 2, None)
    assert [x.run_id for x in page] == ["r5", "r4"]
    page = store.list(r.RunFilter(), 10, (page[-1].create_time, page[-1].run_id))
    assert [x.run_id for x in page] == ["r3", "r2", "r1"]
    assert [x.run_id for x in store.list(r.RunFilter(state=r.RUNNING), 10, None)] == ["r1"]
    assert [x.run_id for x in store.unfinished()] == ["r1"]
    # A new store on the same file (a restart) sees everything.
    again = SqlRunStore(create_engine(f"sqlite:///{tmp_path / 'v.db'}"))
    restarted = again.get("r1")
    assert restarted is not None and restarted.requested_by.teams == ("onc",)
