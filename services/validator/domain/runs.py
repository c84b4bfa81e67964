"""Validation runs and their events as plain data, and the store interface they are kept in."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

QUEUED, RUNNING, COMPLETED, ERRORED, CANCELLED = "QUEUED", "RUNNING", "COMPLETED", "ERRORED", "CANCELLED"
STATES = (QUEUED, RUNNING, COMPLETED, ERRORED, CANCELLED)
TERMINAL = frozenset({COMPLETED, ERRORED, CANCELLED})
PENDING, IN_PROGRESS, DONE = "PENDING", "RUNNING", "DONE"

EVENT_STATE, EVENT_CHECK_STARTED, EVENT_CHECK_FINISHED = "state_changed", "check_started", "check_finished"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who started a run, from the verified token (never from request fields)."""

    subject: str
    issuer: str = ""
    display_name: str = ""
    email: str = ""
    roles: tuple[str, ...] = ()
    kind: str = "HUMAN"  # HUMAN | SERVICE
    teams: tuple[str, ...] = ()


@dataclasses.dataclass
class CheckProgress:
    name: str
    type: str
    phase: str = PENDING
    status: str = ""


@dataclasses.dataclass
class Run:
    run_id: str
    request_id: str
    request_fingerprint: str
    model_name: str
    version: int
    artifact_digest: str
    format: str
    policy_name: str
    policy_digest: str
    environment: str
    champion: tuple[str, int] | None
    state: str
    checks: list[CheckProgress]
    requested_by: Actor
    create_time: dt.datetime
    verdict: str = ""
    report_digest: str = ""
    message: str = ""
    start_time: dt.datetime | None = None
    finish_time: dt.datetime | None = None
    record_time: dt.datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclasses.dataclass(frozen=True)
class Event:
    run_id: str
    sequence: int
    time: dt.datetime
    kind: str
    data: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RunFilter:
    model_name: str = ""
    version: int = 0
    state: str = ""
    policy_name: str = ""


class RunStore(Protocol):
    """Where runs, their events and reports live (storage/sql_store.py: sqlite or PostgreSQL)."""

    def create(self, run: Run) -> Run:
        """Insert `run`; if its request_id exists already, return the stored run instead."""

    def get(self, run_id: str) -> Run | None: ...

    def save(self, run: Run) -> None:
        """Overwrite the run's mutable fields (state, checks, verdict, times, message, digest)."""

    def append_event(self, run_id: str, time: dt.datetime, kind: str, data: dict[str, Any]) -> Event: ...

    def events(self, run_id: str, after: int) -> list[Event]: ...

    def save_report(self, run_id: str, report_json: bytes, report_digest: str) -> None: ...

    def report(self, run_id: str) -> bytes | None: ...

    def list(self, flt: RunFilter, limit: int, after: tuple[dt.datetime, str] | None) -> Sequence[Run]:
        """Runs newest first (create_time, run_id descending), strictly after the `after` key."""

    def unfinished(self) -> Sequence[Run]:
        """Runs in QUEUED or RUNNING state (after a restart: runs that were in flight)."""
