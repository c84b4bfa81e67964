"""Batch jobs and team quotas: a queue per team, device slots shared with weighted fair share.

A job waits (QUEUED) until a device slot is free and its team holds fewer slots than its quota
allows. When a slot frees, the next job comes from the eligible team that uses the smallest share
of its quota (slots held / max_concurrent_slots), ties going to the team whose next job has waited
longest; within a team, higher priority first, then oldest first. A team at its quota therefore
only queues: it can never take the slot another team is entitled to, and a team with jobs waiting
is served before a team that already holds more of its share. Running jobs are never preempted.
Jobs live in memory (a restart loses the queue; see the ADR).
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import enum
import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Mapping

from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from services.gpu_runner.domain.audit_trail import AuditTrail

log = logging.getLogger(__name__)


class JobState(enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Priority(enum.IntEnum):
    LOW = 1
    NORMAL = 2
    HIGH = 3


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What a submission asks for (everything but identity and timing)."""

    model_name: str
    model_version: int
    team: str
    input_uri: str
    input_format: str  # PARQUET | SAFETENSORS | NUMPY
    output_uri: str
    output_format: str
    batch_size: int
    priority: Priority = Priority.NORMAL
    input_mapping: tuple[tuple[str, str], ...] = ()
    request_id: str = ""


@dataclasses.dataclass(frozen=True)
class Submitter:
    subject: str
    name: str = ""
    roles: tuple[str, ...] = ()
    kind: str = "user"


@dataclasses.dataclass
class Progress:
    records_total: int = 0
    records_processed: int = 0
    records_failed: int = 0
    batches_completed: int = 0


@dataclasses.dataclass
class Job:
    job_id: str
    spec: JobSpec
    digest: str
    submitted_by: Submitter
    seq: int
    create_time: dt.datetime
    state: JobState = JobState.QUEUED
    start_time: dt.datetime | None = None
    finish_time: dt.datetime | None = None
    message: str = ""
    progress: Progress = dataclasses.field(default_factory=Progress)
    queue_position: int = 0
    revision: int = 0
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)

    def snapshot(self) -> Job:
        return dataclasses.replace(self, progress=dataclasses.replace(self.progress))


@dataclasses.dataclass(frozen=True)
class TeamQuota:
    team: str
    max_concurrent_slots: int
    max_queued_jobs: int
    slots_in_use: int = 0
    queued_jobs: int = 0
    updated_by: Submitter | None = None
    update_time: dt.datetime | None = None


class QuotaExceeded(ResourceExhausted):
    def __init__(self, message: str, *, team: str, limit: str, limit_value: int, current_value: int) -> None:
        super().__init__(message)
        self.team, self.limit, self.limit_value, self.current_value = team, limit, limit_value, current_value


class JobCancelled(Exception):
    """Raised inside a running job when it notices its cancel flag."""


class JobContext:
    """What a running job may do to its own record: report progress, notice cancellation."""

    def __init__(self, scheduler: JobScheduler, job: Job) -> None:
        self._scheduler, self._job = scheduler, job

    @property
    def cancelled(self) -> bool:
        return self._job.cancel.is_set()

    def check_cancelled(self) -> None:
        if self._job.cancel.is_set():
            raise JobCancelled()

    def progress(self, **fields: int) -> None:
        self._scheduler._update_progress(self._job, fields)


Executor = Callable[[Job, JobContext], None]


class JobScheduler:
    def __init__(
        self,
        total_slots: int,
        executor: Executor,
        *,
        default_slots: int = 1,
        default_queued: int = 16,
        max_retained: int = 10_000,
        audit: AuditTrail | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        if total_slots < 1:
            raise ValueError("a runner needs at least one batch slot")
        self.audit = audit or AuditTrail()
        self.total_slots = total_slots
        self.default_slots = min(default_slots, total_slots)
        self.default_queued = default_queued
        self._executor = executor
        self._now = now
        self._max_retained = max_retained
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._by_request: dict[str, str] = {}
        self._quotas: dict[str, TeamQuota] = {}
        self._held: dict[str, int] = {}  # slots held per team (until the worker really stops)
        self._seq = itertools.count(1)
        self._closed = False

    # ---- submissions ----------------------------------------------------------------------------
    def submit(self, spec: JobSpec, digest: str, submitter: Submitter) -> Job:
        """Queue a job; a retry with the same request_id returns the first job."""
        with self._cond:
            if spec.request_id and spec.request_id in self._by_request:
                job = self._jobs[self._by_request[spec.request_id]]
                if job.spec != spec:
                    raise InvalidArgument(f"request_id {spec.request_id} was already used for a different job")
                return job.snapshot()
            quota = self._quota(spec.team)
            queued = self._count(spec.team, JobState.QUEUED)
            if queued >= quota.max_queued_jobs:
                raise QuotaExceeded(
                    f"team {spec.team} already has {queued} queued job(s), its limit; wait for some to start",
                    team=spec.team,
                    limit="max_queued_jobs",
                    limit_value=quota.max_queued_jobs,
                    current_value=queued,
                )
            job = Job(str(uuid.uuid4()), spec, digest, submitter, next(self._seq), self._now())
            self._jobs[job.job_id] = job
            if spec.request_id:
                self._by_request[spec.request_id] = job.job_id
            self.audit.record(
                "job.submit",
                f"jobs/{job.job_id}",
                "batch job submitted",
                team=spec.team,
                model=f"{spec.model_name}:{spec.model_version}",
                digest=digest,
            )
            self._dispatch()
            self._forget_old()
            return job.snapshot()

    def cancel(self, job_id: str, reason: str, actor: str = "") -> Job:
        if not reason.strip():
            raise InvalidArgument("reason is required to cancel a job")
        with self._cond:
            job = self._get(job_id)
            if job.state.terminal:
                raise FailedPrecondition(f"job {job_id} is already {job.state.value}")
            job.cancel.set()
            self._finish(job, JobState.CANCELLED, f"cancelled: {reason.strip()}")
            self.audit.record("job.cancel", f"jobs/{job_id}", "batch job cancelled", reason=reason.strip())
            self._dispatch()
            return job.snapshot()

    # ---- reads ----------------------------------------------------------------------------------
    def find_request(self, request_id: str) -> Job | None:
        """The job submitted with `request_id`, if any (idempotent retries)."""
        with self._cond:
            job_id = self._by_request.get(request_id) if request_id else None
            return self._jobs[job_id].snapshot() if job_id else None

    def get(self, job_id: str) -> Job:
        with self._cond:
            return self._get(job_id).snapshot()

    def list(self, *, teams: set[str] | None = None, state: JobState | None = None, model: str = "") -> list[Job]:
        """Jobs newest first, filtered by teams (None: all), state and model name."""
        with self._cond:
            jobs = [
                j.snapshot()
                for j in self._jobs.values()
                if (teams is None or j.spec.team in teams)
                and (state is None or j.state is state)
                and (not model or j.spec.model_name == model)
            ]
        return sorted(jobs, key=lambda j: j.seq, reverse=True)

    def watch(self, job_id: str, after_revision: int, timeout: float) -> Job:
        """The job once its revision is past `after_revision` (or as it is after `timeout`)."""
        with self._cond:
            job = self._get(job_id)
            self._cond.wait_for(lambda: job.revision > after_revision or self._closed, timeout)
            return job.snapshot()

    def quota(self, team: str) -> TeamQuota:
        if not team:
            raise InvalidArgument("team is required")
        with self._cond:
            return self._quota(team)

    def quotas(self) -> builtins.list[TeamQuota]:
        with self._cond:
            return [self._quota(t) for t in sorted(self._quotas)]

    def set_quota(self, team: str, slots: int, queued: int, actor: Submitter, reason: str) -> TeamQuota:
        if not team:
            raise InvalidArgument("team is required")
        if not reason.strip():
            raise InvalidArgument("reason is required to change a quota")
        if slots < 0 or queued < 0:
            raise InvalidArgument("quota limits must not be negative")
        if slots > self.total_slots:
            raise InvalidArgument(f"max_concurrent_slots {slots} exceeds the runner's {self.total_slots} batch slots")
        with self._cond:
            self._quotas[team] = TeamQuota(team, slots, queued, updated_by=actor, update_time=self._now())
            self.audit.record(
                "quota.set",
                f"teams/{team}/quota",
                "team quota set",
                max_concurrent_slots=slots,
                max_queued_jobs=queued,
                reason=reason.strip(),
            )
            self._dispatch()  # a raised limit may let queued jobs start now
            return self._quota(team)

    def usage(self) -> tuple[int, int]:
        """(slots in use, jobs queued) across all teams."""
        with self._cond:
            return sum(self._held.values()), sum(1 for j in self._jobs.values() if j.state is JobState.QUEUED)

    def count(self, state: JobState) -> int:
        with self._cond:
            return sum(1 for j in self._jobs.values() if j.state is state)

    def uses_model(self, name: str, version: int) -> bool:
        with self._cond:
            return any(
                j.state is JobState.RUNNING and (j.spec.model_name, j.spec.model_version) == (name, version)
                for j in self._jobs.values()
            )

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything still queued or running (process shutdown)."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                if not job.state.terminal:
                    job.cancel.set()
                    self._finish(job, JobState.CANCELLED, "cancelled: the runner shut down")
            self._cond.wait_for(lambda: not any(self._held.values()), timeout)

    # ---- internals (caller holds the lock) --------------------------------------------------------
    def _get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"batch job {job_id!r} does not exist")
        return job

    def _count(self, team: str, state: JobState) -> int:
        return sum(1 for j in self._jobs.values() if j.spec.team == team and j.state is state)

    def _quota(self, team: str) -> TeamQuota:
        base = self._quotas.get(team) or TeamQuota(team, self.default_slots, self.default_queued)
        return dataclasses.replace(
            base, slots_in_use=self._held.get(team, 0), queued_jobs=self._count(team, JobState.QUEUED)
        )

    def _limit(self, team: str) -> int:
        quota = self._quotas.get(team)
        return quota.max_concurrent_slots if quota else self.default_slots

    def _queues(self) -> dict[str, builtins.list[Job]]:
        queues: dict[str, list[Job]] = {}
        for job in self._jobs.values():
            if job.state is JobState.QUEUED:
                queues.setdefault(job.spec.team, []).append(job)
        for jobs in queues.values():
            jobs.sort(key=lambda j: (-int(j.spec.priority), j.seq))
        return queues

    @staticmethod
    def _pick(
        queues: Mapping[str, builtins.list[Job]],
        held: Mapping[str, int],
        limits: Mapping[str, int],
        *,
        capped: bool = True,
    ) -> Job | None:
        """The next job by weighted fair share; `capped=False` ignores quotas already full."""
        eligible = [
            t for t, jobs in queues.items() if jobs and limits[t] > 0 and (not capped or held.get(t, 0) < limits[t])
        ]
        if not eligible:
            return None
        team = min(eligible, key=lambda t: (held.get(t, 0) / limits[t], queues[t][0].seq))
        return queues[team][0]

    def _dispatch(self) -> None:
        queues = self._queues()
        limits = {t: self._limit(t) for t in queues}
        while not self._closed and sum(self._held.values()) < self.total_slots:
            job = self._pick(queues, self._held, limits)
            if job is None:
                break
            queues[job.spec.team].pop(0)
            self._held[job.spec.team] = self._held.get(job.spec.team, 0) + 1
            job.state, job.start_time = JobState.RUNNING, self._now()
            self._touch(job)
            threading.Thread(target=self._run, args=(job,), name=f"job-{job.job_id[:8]}", daemon=True).start()
        self._update_positions()

    def _update_positions(self) -> None:
        """Queue positions in the order jobs would start if no new job arrived (1 = next)."""
        queues = self._queues()
        limits = {t: self._limit(t) for t in queues}
        held = dict(self._held)
        order: list[Job] = []
        while True:
            # Simulated order: quota shares and priorities as the scheduler applies them, without
            # knowing when running jobs finish (so quotas are not capped here).
            job = self._pick(queues, held, limits, capped=False)
            if job is None:
                break
            queues[job.spec.team].pop(0)
            held[job.spec.team] = held.get(job.spec.team, 0) + 1
            order.append(job)
        blocked = [j for jobs in queues.values() for j in jobs]  # teams with a quota of 0 slots
        for position, job in enumerate(order + blocked, start=1):
            if job.queue_position != position:
                job.queue_position = position
                self._touch(job)

    def _run(self, job: Job) -> None:
        try:
            self._executor(job, JobContext(self, job))
            outcome, message = JobState.SUCCEEDED, ""
        except JobCancelled:
            outcome, message = JobState.CANCELLED, "cancelled"
        except Exception as err:  # noqa: BLE001 - a job's failure is recorded, never the scheduler's
            log.warning("batch job failed", extra={"job_id": job.job_id, "error": str(err)})
            outcome, message = JobState.FAILED, getattr(err, "message", "") or f"{type(err).__name__}: {err}"
        with self._cond:
            if not job.state.terminal:
                self._finish(job, outcome, message)
            self._held[job.spec.team] -= 1
            self._dispatch()
            self._cond.notify_all()

    def _finish(self, job: Job, state: JobState, message: str) -> None:
        job.state, job.message, job.finish_time, job.queue_position = state, message, self._now(), 0
        self._touch(job)
        self._update_positions()

    def _touch(self, job: Job) -> None:
        job.revision += 1
        self._cond.notify_all()

    def _update_progress(self, job: Job, fields: Mapping[str, int]) -> None:
        with self._cond:
            for name, value in fields.items():
                setattr(job.progress, name, value)
            self._touch(job)

    def _forget_old(self) -> None:
        if len(self._jobs) <= self._max_retained:
            return
        for job in sorted(self._jobs.values(), key=lambda j: j.seq):
            if len(self._jobs) <= self._max_retained:
                break
            if job.state.terminal:
                self._jobs.pop(job.job_id)
                self._by_request.pop(job.spec.request_id, None)
