import dataclasses
import datetime as dt

import pytest

from libs.audit.events import GENESIS, AuditEvent, EventDraft, chain_next, compute_hash
from libs.audit.verify import Head, Problem, verify_chain

KEY = b"k" * 32
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _chain(n: int, key: bytes | None = KEY) -> list[AuditEvent]:
    events, prev = [], GENESIS
    for i in range(1, n + 1):
        draft = EventDraft(actor="alice", action="model.register", subject=f"models/m/versions/{i}", details={"i": i})
        event = chain_next(draft, seq=i, prev_hash=prev, now=T0 + dt.timedelta(seconds=i), key=key)
        events.append(event)
        prev = event.hash
    return events


def _head(events: list[AuditEvent]) -> Head:
    return Head(events[-1].seq, events[-1].hash)


def _rehash(event: AuditEvent, key: bytes | None = None) -> AuditEvent:
    h = compute_hash(event.hashed_fields())
    return dataclasses.replace(event, hash=h, seal="" if key is None else event.seal)


def test_intact_chain_verifies() -> None:
    events = _chain(5)
    verdict = verify_chain(events, head=_head(events), key=KEY)
    assert verdict.ok and verdict.checked == 5


def test_edited_event_is_found() -> None:
    events = _chain(5)
    events[2] = dataclasses.replace(events[2], actor="mallory")
    verdict = verify_chain(events, head=_head(events), key=KEY)
    assert (verdict.ok, verdict.problem, verdict.seq) == (False, Problem.EDITED, 3)


def test_edit_rehashed_without_key_is_caught_by_the_seal() -> None:
    events = _chain(5)
    events[2] = _rehash(dataclasses.replace(events[2], details={"i": 999}))
    verdict = verify_chain(events, key=KEY)
    assert (verdict.problem, verdict.seq) == (Problem.EDITED, 3)
    assert "seal" in verdict.message


def test_edit_rehashed_in_an_unsealed_chain_breaks_the_next_link() -> None:
    events = _chain(5, key=None)
    events[2] = _rehash(dataclasses.replace(events[2], details={"i": 999}))
    verdict = verify_chain(events)
    assert not verdict.ok and verdict.seq == 4
    assert "event 3 was edited and re-hashed" in verdict.message


def test_deleted_middle_event_is_found() -> None:
    events = _chain(5)
    del events[1]
    verdict = verify_chain(events, head=_head(events), key=KEY)
    assert (verdict.problem, verdict.seq) == (Problem.DELETED, 2)
    assert verdict.message == "event 2 missing before event 3"


def test_deleted_newest_events_are_found_through_the_head() -> None:
    events = _chain(5)
    head = _head(events)
    verdict = verify_chain(events[:3], head=head, key=KEY)
    assert (verdict.problem, verdict.seq) == (Problem.TRUNCATED, 4)
    assert verdict.message == "events 4..5 missing at the end of the chain"


def test_inserted_event_is_found() -> None:
    events = _chain(5, key=None)
    forged = chain_next(
        EventDraft(actor="mallory", action="approval.sign", subject="models/m/versions/3"),
        seq=3,
        prev_hash="f" * 64,
        now=T0,
    )
    events.insert(3, forged)
    verdict = verify_chain(events)
    assert (verdict.problem, verdict.seq) == (Problem.INSERTED, 3)


def test_duplicate_position_is_an_insertion() -> None:
    events = _chain(4, key=None)
    events.insert(2, events[1])
    verdict = verify_chain(events)
    assert (verdict.problem, verdict.seq) == (Problem.INSERTED, 2)


def test_swapped_events_are_reordered() -> None:
    events = _chain(5)
    events[1], events[2] = events[2], events[1]
    verdict = verify_chain(events, head=_head(events), key=KEY)
    assert (verdict.problem, verdict.seq) == (Problem.REORDERED, 2)
    assert verdict.message == "event 2 is stored after event 3"


def test_event_moved_to_the_end_is_reordered() -> None:
    events = _chain(5)
    events.append(events.pop(1))
    verdict = verify_chain(events, key=KEY)
    assert (verdict.problem, verdict.seq) == (Problem.REORDERED, 2)
    assert verdict.message == "event 2 is stored after event 5"


def test_tail_appended_beyond_head_is_inserted() -> None:
    events = _chain(5)
    head = Head(events[3].seq, events[3].hash)
    verdict = verify_chain(events, head=head, key=KEY)
    assert (verdict.problem, verdict.seq) == (Problem.INSERTED, 5)


def test_details_must_be_json() -> None:
    with pytest.raises(TypeError):
        chain_next(
            EventDraft(actor="a", action="b", subject="c", details={"x": object()}), seq=1, prev_hash=GENESIS, now=T0
        )
