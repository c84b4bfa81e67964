"""Verifying the audit chain from the middle: libs/audit's verifier, started after a trusted event.

`libs.audit.verify.verify_chain` always starts at sequence 1 with the genesis hash, which is what
VerifyChain uses for a range that starts at the beginning. AuditService also verifies a range
from `from_sequence`, trusting the stored hash of the event before it; this is the same algorithm
with that starting point (verify_chain's `start`). `ChainVerifier`
picks the right one for a range, tells concurrent appends from forged rows past the head, checks
an external anchor and reports the hashes that disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from libs.audit.events import AuditEvent, compute_hash
from libs.audit.store import SqlAuditStore
from libs.audit.verify import Head, Problem, Verdict, verify_chain
from libs.errors.domain_errors import InvalidArgument


def verify_from(
    events: Iterable[AuditEvent], start: Head, head: Head | None = None, key: bytes | None = None
) -> Verdict:
    """Check `events` (storage order, sequences after `start.seq`) as the continuation of `start`."""
    return verify_chain(events, head=head, key=key, start=start)


@dataclasses.dataclass(frozen=True)
class ChainBreak:
    problem: Problem
    seq: int
    message: str
    expected_hash: str = ""
    actual_hash: str = ""


class ChainVerifier:
    """Verifies a range of the stored chain, optionally against an anchored head.

    `first_after(seq)` returns the stored event with the lowest sequence above `seq`, or None.
    """

    def __init__(
        self, store: SqlAuditStore, first_after: Callable[[int], AuditEvent | None], key: bytes | None
    ) -> None:
        self.store = store
        self._first_after = first_after
        self.key = key

    def verify(self, from_seq: int, to_seq: int, anchor: Head | None) -> tuple[int, ChainBreak | None]:
        """(events checked, the first break or None) for [from_seq, to_seq]; 0 means the head."""
        if from_seq < 0 or to_seq < 0:
            raise InvalidArgument("from_sequence and to_sequence must not be negative")
        if to_seq and from_seq > to_seq:
            raise InvalidArgument("from_sequence is after to_sequence")
        head = self.store.head()
        verdict, start, end = self._verdict(from_seq, to_seq, head)
        found = None
        if not verdict.ok:
            found = self._break(verdict, head)
        elif verdict.checked < end - start + 1:
            missing = start + verdict.checked
            found = ChainBreak(Problem.DELETED, missing, f"events {missing}..{end} missing before event {end + 1}")
        elif not to_seq or to_seq >= head.seq:
            found = self._forged_tail()
        if found is None and anchor is not None:
            found = self._check_anchor(anchor)
        return verdict.checked, found

    def _verdict(self, from_seq: int, to_seq: int, head: Head) -> tuple[Verdict, int, int]:
        """The verifier's verdict on [start, end], the range bounded by the head read before.

        Appends go on while we scan; events beyond that head are left to `_forged_tail`, which
        tells a concurrent append (it moves the head) from a row written past it (it does not).
        """
        start, end = max(from_seq, 1), min(to_seq or head.seq, head.seq)
        to_the_head = end == head.seq  # then the recorded head also catches deleted newest events
        events = (e for e in self.store.scan() if start <= e.seq <= end)
        if start > end:
            verdict = Verdict(ok=True, checked=0, message="nothing to verify")
        elif start == 1:
            verdict = verify_chain(events, head=head if to_the_head else None, key=self.key)
        else:
            trusted = self.store.get(seq=start - 1)
            if trusted is None:
                verdict = Verdict(False, 0, Problem.DELETED, start - 1, f"event {start - 1} is missing")
            else:
                verdict = verify_from(events, Head(trusted.seq, trusted.hash), head if to_the_head else None, self.key)
        return verdict, start, max(end, start - 1)

    def _forged_tail(self) -> ChainBreak | None:
        """An event stored beyond the recorded head that no append accounts for."""
        for _attempt in range(10):
            head = self.store.head()
            forged = self._first_after(head.seq)
            if forged is None:
                return None
            if self.store.head().seq == head.seq:  # no append moved the head meanwhile
                return ChainBreak(
                    Problem.INSERTED,
                    forged.seq,
                    f"event {forged.seq} is stored after the recorded head {head.seq}",
                    expected_hash=head.hash,
                    actual_hash=forged.prev_hash,
                )
        return None

    def _check_anchor(self, anchor: Head) -> ChainBreak | None:
        event = self.store.get(seq=anchor.seq)
        if event is not None and event.hash == anchor.hash:
            return None
        what = "is missing" if event is None else "has another hash"
        return ChainBreak(
            Problem.TRUNCATED,
            anchor.seq,
            f"the anchored head event {anchor.seq} {what}: the chain was truncated or rewritten",
            expected_hash=anchor.hash,
            actual_hash=event.hash if event else "",
        )

    def _break(self, verdict: Verdict, head: Head) -> ChainBreak:
        """The verifier's verdict plus the two hashes that disagree, looked up best-effort."""
        assert verdict.problem is not None  # called only for a verdict that is not ok
        event = self.store.get(seq=verdict.seq)
        before = self.store.get(seq=verdict.seq - 1) if verdict.seq > 1 else None
        expected = actual = ""
        if verdict.problem == Problem.EDITED and event is not None:
            expected, actual = compute_hash(event.hashed_fields()), event.hash
        elif verdict.problem == Problem.TRUNCATED:
            last = self.store.get(seq=verdict.seq - 1)
            expected, actual = head.hash, last.hash if last else ""
        elif verdict.problem == Problem.DELETED:
            expected = before.hash if before else ""
        elif event is not None:
            expected, actual = (before.hash if before else ""), event.prev_hash
        return ChainBreak(verdict.problem, verdict.seq, verdict.message, expected, actual)
