"""Batch-job use cases: submission checks, team access, paging; the scheduler does the queueing.

A submission is checked completely before it queues: fields, input and output locations (the
output must be new or empty), the version exists, its format can be served, and it passes the
gates of the runner's environment. Its artifact digest is fixed then; the job later refuses to run
if the version's bytes differ. Callers see only their teams' jobs unless they are platform admins.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
import hashlib
import json

from libs.errors.domain_errors import InvalidArgument, PermissionDenied
from services.gpu_runner.domain.datasets import FORMATS, Storage
from services.gpu_runner.domain.jobs import Job, JobScheduler, JobSpec, JobState, Submitter, TeamQuota
from services.gpu_runner.domain.source import ModelSource
from services.gpu_runner.loaders import LoaderSet

ADMIN_ROLE = "platform-admin"
MAX_PAGE = 1000
DEFAULT_PAGE = 50


@dataclasses.dataclass(frozen=True)
class Caller:
    subject: str
    teams: frozenset[str]
    roles: frozenset[str]
    name: str = ""
    kind: str = "user"

    @property
    def admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def submitter(self) -> Submitter:
        return Submitter(self.subject, self.name, tuple(sorted(self.roles)), self.kind)


def page_bounds(page_size: int, token: str, query: dict) -> tuple[int, int]:
    """(offset, size) for a page; the token is bound to the query so it cannot be replayed elsewhere."""
    if page_size < 0:
        raise InvalidArgument("page_size must not be negative")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    fingerprint = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]
    if not token:
        return 0, size
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, bound = int(data["o"]), data["q"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token is not one this server issued") from None
    if bound != fingerprint or offset < 0:
        raise InvalidArgument("page_token belongs to a different query; keep every other field unchanged")
    return offset, size


def next_token(offset: int, size: int, total: int, query: dict) -> str:
    if offset + size >= total:
        return ""
    fingerprint = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]
    return base64.urlsafe_b64encode(json.dumps({"o": offset + size, "q": fingerprint}).encode()).decode()


class BatchJobs:
    def __init__(self, scheduler: JobScheduler, source: ModelSource, storage: Storage, loaders: LoaderSet) -> None:
        self.scheduler = scheduler
        self.source = source
        self.storage = storage
        self.loaders = loaders

    @staticmethod
    def _member(caller: Caller, team: str) -> None:
        if not caller.admin and team not in caller.teams:
            raise PermissionDenied(f"{caller.subject} is not a member of team {team!r}")

    def submit(self, spec: JobSpec, caller: Caller) -> Job:
        problems = []
        if not spec.model_name or spec.model_version < 1:
            problems.append("model.name and a model.version >= 1 are required")
        if not spec.team:
            problems.append("team is required")
        if spec.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {spec.batch_size}")
        if spec.input_format not in FORMATS or spec.output_format not in FORMATS:
            problems.append(f"input.format and output.format must be one of {', '.join(FORMATS)}")
        if not spec.input_uri or not spec.output_uri:
            problems.append("input.uri and output.uri are required")
        if problems:
            raise InvalidArgument("; ".join(problems))
        if not caller.admin and spec.team not in caller.teams:
            raise PermissionDenied(f"{caller.subject} is not a member of team {spec.team!r} and cannot submit for it")
        earlier = self.scheduler.find_request(spec.request_id)
        if earlier is not None:  # a retry: its output exists by now, so only the scheduler's check applies
            return self.scheduler.submit(spec, earlier.digest, caller.submitter())
        self.storage.input_files(spec.input_uri, spec.input_format)
        self.storage.check_output(spec.output_uri)
        version = self.source.resolve(spec.model_name, spec.model_version)
        self.loaders.loader_for(version.format)
        self.source.check_gates(version)
        return self.scheduler.submit(spec, version.digest, caller.submitter())

    def get(self, job_id: str, caller: Caller) -> Job:
        job = self.scheduler.get(job_id)
        self._member(caller, job.spec.team)
        return job

    def watch(self, job_id: str, caller: Caller, after_revision: int, timeout: float) -> Job:
        self.get(job_id, caller)
        return self.scheduler.watch(job_id, after_revision, timeout)

    def cancel(self, job_id: str, reason: str, caller: Caller) -> Job:
        self.get(job_id, caller)
        return self.scheduler.cancel(job_id, reason, caller.subject)

    def list(
        self, caller: Caller, *, team: str, state: JobState | None, model: str, page_size: int, page_token: str
    ) -> tuple[list[Job], str]:
        if team:
            self._member(caller, team)
            teams: set[str] | None = {team}
        else:
            teams = None if caller.admin else set(caller.teams)
        query = {"team": team, "state": state.value if state else "", "model": model}
        offset, size = page_bounds(page_size, page_token, query)
        jobs = self.scheduler.list(teams=teams, state=state, model=model)
        return jobs[offset : offset + size], next_token(offset, size, len(jobs), query)

    def quotas(self, page_size: int, page_token: str) -> tuple[builtins.list[TeamQuota], str]:
        offset, size = page_bounds(page_size, page_token, {"quotas": 1})
        quotas = self.scheduler.quotas()
        return quotas[offset : offset + size], next_token(offset, size, len(quotas), {"quotas": 1})
