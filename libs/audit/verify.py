"""Verifying an audit chain: finds the first edited, deleted, inserted or reordered event.

Events are checked in storage order (the order rows were written). A valid chain has sequence
numbers 1, 2, 3, ... with each event's `prev_hash` equal to the previous event's `hash`, every
hash matching its content, every seal matching its hash (when a key is configured), and the last
event matching the recorded head (which catches deletion of the newest events).
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
from collections.abc import Iterable

from libs.audit.events import GENESIS, AuditEvent, compute_hash, compute_seal


class Problem(enum.Enum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"


@dataclasses.dataclass(frozen=True)
class Head:
    """The newest event's position and hash, recorded beside the chain on every append."""

    seq: int
    hash: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    problem: Problem | None = None
    seq: int = 0
    message: str = ""


def _bad(problem: Problem, seq: int, checked: int, message: str) -> Verdict:
    return Verdict(ok=False, checked=checked, problem=problem, seq=seq, message=message)


def verify_chain(
    events: Iterable[AuditEvent],
    *,
    head: Head | None = None,
    key: bytes | None = None,
    start: Head | None = None,
) -> Verdict:
    """Check the chain; on the first problem return which event and what happened to it.

    `start` is a trusted event to continue from (its seq and hash); by default the genesis, so
    `events` begin at sequence 1.

    When positions are skipped, the rest of the stream is only scanned for the skipped events:
    if one turns up later it was moved (REORDERED), otherwise it was DELETED.
    """
    start = start or Head(0, GENESIS)
    expected_seq, expected_prev = start.seq + 1, start.hash
    gap: tuple[int, int] | None = None  # skipped positions [lo, hi)
    last_seen = 0
    checked = 0
    for event in events:
        checked += 1
        if gap is not None:
            if gap[0] <= event.seq < gap[1]:
                return _bad(
                    Problem.REORDERED, event.seq, checked, f"event {event.seq} is stored after event {last_seen}"
                )
            last_seen = max(last_seen, event.seq)
            continue
        if compute_hash(event.hashed_fields()) != event.hash:
            return _bad(Problem.EDITED, event.seq, checked, f"event {event.seq}: content does not match its hash")
        if key and not hmac.compare_digest(compute_seal(key, event.hash), event.seal or ""):
            return _bad(
                Problem.EDITED,
                event.seq,
                checked,
                f"event {event.seq}: seal does not match (rewritten without the audit key)",
            )
        if event.seq < expected_seq:
            return _bad(
                Problem.INSERTED, event.seq, checked, f"event {event.seq}: a second event claims an existing position"
            )
        if event.seq > expected_seq:
            gap = (expected_seq, event.seq)
            last_seen = event.seq
            continue
        if event.prev_hash != expected_prev:
            return _bad(
                Problem.INSERTED if event.seq > 1 else Problem.EDITED,
                event.seq,
                checked,
                f"event {event.seq} does not link to event {event.seq - 1}: it was inserted, "
                f"or event {event.seq - 1} was edited and re-hashed",
            )
        last_seen = event.seq
        expected_seq, expected_prev = event.seq + 1, event.hash
    if gap is not None:
        lo, hi = gap
        missing = f"event {lo}" if hi == lo + 1 else f"events {lo}..{hi - 1}"
        return _bad(Problem.DELETED, lo, checked, f"{missing} missing before event {hi}")
    last_seq = expected_seq - 1
    if head is not None:
        if head.seq > last_seq:
            missing = f"event {head.seq}" if head.seq == last_seq + 1 else f"events {last_seq + 1}..{head.seq}"
            return _bad(Problem.TRUNCATED, last_seq + 1, checked, f"{missing} missing at the end of the chain")
        if head.seq < last_seq:
            return _bad(Problem.INSERTED, head.seq + 1, checked, f"events after the recorded head {head.seq}")
        if last_seq and head.hash != expected_prev:
            return _bad(Problem.EDITED, last_seq, checked, f"event {last_seq} does not match the recorded head")
    return Verdict(ok=True, checked=checked, message=f"{checked} events verified")
