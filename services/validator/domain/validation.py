"""The validator's use cases: start, read, watch, cancel and list runs, read reports and policies.

Runs are queued in memory and executed by a fixed number of threads, each driving one sandboxed
run at a time; the run records (and their events and reports) are in the run store, so they
outlive the process. A run that was in flight when the process died is marked ERRORED at start.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator

from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from services.validator.domain import runs as r
from services.validator.domain.engine import Engine, Notifier, RunControl
from services.validator.domain.policies import PolicySet
from services.validator.domain.ports import RegistryPort
from services.validator.domain.versions import VersionInfo

log = logging.getLogger("causeway.validator")
MODEL_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
# Who may validate any model; everyone else only the models of their own teams.
VALIDATE_ANY_ROLES = frozenset({"platform-admin", "qa-approver"})
CANCEL_ANY_ROLES = frozenset({"platform-admin"})
DEFAULT_PAGE, MAX_PAGE = 50, 1000


@dataclasses.dataclass(frozen=True)
class StartRequest:
    model_name: str
    version: int
    policy_name: str = ""
    environment: str = ""
    champion: tuple[str, int] | None = None
    request_id: str = ""


def _check_model(name: str, version: int, field: str) -> None:
    if not MODEL_NAME.match(name or ""):
        raise InvalidArgument(f"{field}.name must be a DNS-1123 label (1-63 of [a-z0-9-], starting with a letter)")
    if version < 1:
        raise InvalidArgument(f"{field}.version must be >= 1")


class ValidationService:
    def __init__(
        self,
        *,
        store: r.RunStore,
        registry: RegistryPort,
        policies: PolicySet,
        engine: Engine,
        notifier: Notifier,
        max_queued: int,
        max_concurrent: int,
        clock: Callable[[], dt.datetime] = r.utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.policies = policies
        self.engine = engine
        self.notifier = notifier
        self.max_queued = max_queued
        self.clock = clock
        self._queue: list[str] = []
        self._controls: dict[str, RunControl] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"validation-{i}", daemon=True) for i in range(max_concurrent)
        ]

    # ---- lifecycle ----
    def recover(self) -> int:
        """Mark runs that were in flight when the process ended as ERRORED; returns how many."""
        count = 0
        for run in self.store.unfinished():
            self.engine.set_state(
                run, r.ERRORED, "the validator restarted while this run was in flight; start it again"
            )
            count += 1
        return count

    def start_workers(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what runs, stop taking work (queued runs stay QUEUED until recovery at next start)."""
        with self._cond:
            self._stopping = True
            controls = list(self._controls.values())
            self._cond.notify_all()
        for control in controls:
            control.cancel("the validator is shutting down")
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    return
                run_id = self._queue.pop(0)
                control = self._controls.setdefault(run_id, RunControl())
            try:
                self.engine.execute(run_id, control)
            finally:
                with self._cond:
                    self._controls.pop(run_id, None)

    # ---- start ----
    def _fingerprint(self, actor: r.Actor, req: StartRequest) -> str:
        body = json.dumps([actor.subject, req.model_name, req.version, req.policy_name, req.environment, req.champion])
        return hashlib.sha256(body.encode()).hexdigest()

    def _authorize(self, actor: r.Actor, model_name: str) -> None:
        if VALIDATE_ANY_ROLES & set(actor.roles):
            return
        owner = self.registry.owner_team(model_name)
        if owner and owner in actor.teams:
            return
        raise PermissionDenied(f"{actor.subject} may not validate {model_name}: it belongs to team {owner or '(none)'}")

    def start(self, actor: r.Actor, req: StartRequest) -> r.Run:
        """Accept a run (QUEUED) after resolving the version, the policy and the champion."""
        _check_model(req.model_name, req.version, "model")
        if bool(req.policy_name) == bool(req.environment):
            raise InvalidArgument("exactly one of policy_name or environment is required")
        if req.champion is not None:
            _check_model(req.champion[0], req.champion[1], "champion")
        if req.request_id:
            try:
                uuid.UUID(req.request_id)
            except ValueError:
                raise InvalidArgument("request_id must be a UUID") from None
        fingerprint = self._fingerprint(actor, req)
        self._authorize(actor, req.model_name)
        version = self.registry.get_version(req.model_name, req.version)
        if version.archived:
            raise FailedPrecondition(f"{version.ref} is archived and can no longer be validated")
        policy_name = req.policy_name or self.registry.environment_policy(req.environment)
        policy = self.policies.get(policy_name)
        champion: VersionInfo | None
        if req.champion is not None:
            champion = self.registry.get_version(*req.champion)
        else:
            champion = self.registry.get_champion(req.model_name)
        if champion is not None and (champion.name, champion.version) == (version.name, version.version):
            champion = None  # comparing a version with itself proves nothing
        run = r.Run(
            run_id=str(uuid.uuid4()),
            request_id=req.request_id or str(uuid.uuid4()),
            request_fingerprint=fingerprint,
            model_name=version.name,
            version=version.version,
            artifact_digest=version.artifact_digest,
            format=version.format,
            policy_name=policy.name,
            policy_digest=policy.digest,
            environment=req.environment,
            champion=(champion.name, champion.version) if champion else None,
            state=r.QUEUED,
            checks=[r.CheckProgress(c.name, c.type) for c in policy.checks],
            requested_by=actor,
            create_time=self.clock(),
        )
        with self._cond:
            if len(self._queue) >= self.max_queued:
                raise ResourceExhausted(f"the validation queue is full ({self.max_queued} runs); retry later")
            stored = self.store.create(run)
            if stored.run_id != run.run_id:
                if stored.request_fingerprint != fingerprint:
                    raise InvalidArgument("request_id was already used for a different request")
                return stored
            self.engine.emit(run, r.EVENT_STATE, {"state": r.QUEUED, "message": ""})
            self._queue.append(run.run_id)
            self._controls[run.run_id] = RunControl()
            self._cond.notify_all()
        log.info("run queued", extra={"run_id": run.run_id, "model": version.ref, "policy": policy.name})
        return run

    # ---- read ----
    def get(self, run_id: str) -> r.Run:
        run = self.store.get(run_id) if run_id else None
        if run is None:
            raise NotFound(f"no validation run {run_id!r}")
        return run

    def queue_position(self, run_id: str) -> int:
        with self._cond:
            return self._queue.index(run_id) + 1 if run_id in self._queue else 0

    def watch(self, run_id: str, after: int, active: Callable[[], bool]) -> Iterator[r.Event]:
        """Past events after `after`, then live ones, ending after the terminal state event."""
        if after < 0:
            raise InvalidArgument("after_sequence must not be negative")
        self.get(run_id)
        seen = self.notifier.version
        while active():
            for event in self.store.events(run_id, after):
                after = event.sequence
                yield event
                if event.kind == r.EVENT_STATE and event.data.get("state") in r.TERMINAL:
                    return
            seen = self.notifier.wait(seen, 1.0)

    def cancel(self, actor: r.Actor, run_id: str, reason: str) -> r.Run:
        if not reason.strip():
            raise InvalidArgument("reason is required")
        run = self.get(run_id)
        if actor.subject != run.requested_by.subject and not CANCEL_ANY_ROLES & set(actor.roles):
            raise PermissionDenied(f"{actor.subject} neither started run {run_id} nor is a platform admin")
        with self._cond:
            if run_id in self._queue:
                self._queue.remove(run_id)
                self._controls.pop(run_id, None)
                run = self.get(run_id)
                self.engine.set_state(run, r.CANCELLED, f"cancelled: {reason}")
                log.info("run cancelled", extra={"run_id": run_id, "reason": reason, "actor": actor.subject})
                return run
            control = self._controls.get(run_id)
        if control is None or run.terminal:
            raise FailedPrecondition(f"run {run_id} is already {self.get(run_id).state}")
        if not control.cancel(reason):
            raise FailedPrecondition(f"run {run_id} is recording its report and can no longer be cancelled")
        control.finished.wait(60)
        log.info("run cancelled", extra={"run_id": run_id, "reason": reason, "actor": actor.subject})
        return self.get(run_id)

    def list(self, flt: r.RunFilter, page_size: int, page_token: str) -> tuple[list[r.Run], str]:
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        if flt.version and not flt.model_name:
            raise InvalidArgument("version needs model_name")
        if flt.state and flt.state not in r.STATES:
            raise InvalidArgument("unknown state")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        key = hashlib.sha256(json.dumps(dataclasses.asdict(flt), sort_keys=True).encode()).hexdigest()[:16]
        after = None
        if page_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(page_token.encode()))
                if token["f"] != key:
                    raise ValueError
                after = (dt.datetime.fromisoformat(token["t"]), str(token["id"]))
            except (ValueError, KeyError, TypeError):
                raise InvalidArgument("page_token does not belong to this query") from None
        runs = list(self.store.list(flt, size + 1, after))
        next_token = ""
        if len(runs) > size:
            runs = runs[:size]
            last = runs[-1]
            raw = json.dumps({"f": key, "t": last.create_time.isoformat(), "id": last.run_id})
            next_token = base64.urlsafe_b64encode(raw.encode()).decode()
        return runs, next_token

    def report(self, run_id: str) -> tuple[bytes, str]:
        run = self.get(run_id)
        if run.state != r.COMPLETED:
            raise FailedPrecondition(f"run {run_id} is {run.state}; only a COMPLETED run has a report")
        body = self.store.report(run_id)
        if body is None:
            raise FailedPrecondition(f"run {run_id} has no stored report")
        return body, run.report_digest
