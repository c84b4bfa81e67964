"""A durable audit outbox in a local SQLite file, for services without a database of their own.

`record()` commits the event (SQLite, synchronous=FULL) before it returns, so an action whose
event was recorded is never lost by a crash; `AuditPublisher` (libs/audit/publisher.py) drains
the file into the audit chain and marks what the chain accepted. Sent events are deleted after
`keep_sent` newer ones, so the file stays small.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

OUTCOMES = ("SUCCESS", "FAILURE", "DENIED")


@dataclasses.dataclass(frozen=True)
class OutboxEvent:
    """One event for causeway.audit.v1.AppendEventRequest (the chain adds sequence and hashes)."""

    action: str  # "<resource>.<verb>", e.g. "model.load"
    subject: str  # the resource, e.g. "models/fraud/versions/3"
    outcome: str = "SUCCESS"  # SUCCESS, FAILURE or DENIED
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    actor_subject: str = ""  # the verified caller on whose behalf; empty for the service's own actions
    actor_kind: str = ""  # "user" or "service"
    actor_name: str = ""
    actor_roles: tuple[str, ...] = ()
    request_id: str = ""
    trace_id: str = ""
    event_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    occur_time: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if not self.action or not self.subject:
            raise ValueError("an audit event needs an action and a subject")

    def to_json(self) -> str:
        body = dataclasses.asdict(self)
        body["occur_time"] = self.occur_time.isoformat()
        body["actor_roles"] = list(self.actor_roles)
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> OutboxEvent:
        body = json.loads(text)
        body["occur_time"] = dt.datetime.fromisoformat(body["occur_time"])
        body["actor_roles"] = tuple(body["actor_roles"])
        return cls(**body)


class LocalOutbox:
    def __init__(self, path: Path, *, keep_sent: int = 1000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._keep_sent = keep_sent
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,"
            " body TEXT NOT NULL, sent INTEGER NOT NULL DEFAULT 0)"
        )

    def record(self, event: OutboxEvent) -> None:
        with self._lock:
            self._db.execute("INSERT INTO outbox (event_id, body) VALUES (?, ?)", (event.event_id, event.to_json()))

    def pending_events(self) -> list[tuple[int, OutboxEvent]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, body FROM outbox WHERE sent = 0 ORDER BY seq").fetchall()
        return [(seq, OutboxEvent.from_json(body)) for seq, body in rows]

    def mark_sent(self, seqs: list[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE outbox SET sent = 1 WHERE seq = ?", [(s,) for s in seqs])
            # Keep only the newest `keep_sent` sent events (for inspection); unsent ones always stay.
            self._db.execute(
                "DELETE FROM outbox WHERE sent = 1 AND seq NOT IN"
                " (SELECT seq FROM outbox WHERE sent = 1 ORDER BY seq DESC LIMIT ?)",
                (self._keep_sent,),
            )
            self._db.execute("COMMIT")

    def count_pending(self) -> int:
        with self._lock:
            pending: int = self._db.execute("SELECT COUNT(*) FROM outbox WHERE sent = 0").fetchone()[0]
            return pending

    def close(self) -> None:
        with self._lock:
            self._db.close()
