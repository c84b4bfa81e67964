"""Executing one run: checks in policy order, progress events, the sealed report, recording it.

A run ends in exactly one of three ways:
  COMPLETED  every check produced a result; the report (verdict PASSED / FAILED / ERROR) was
             recorded in the registry, which is what changes the version's validation status;
  ERRORED    something outside the model failed (sandbox unavailable, registry unreachable,
             policy timeout): no report is recorded and the version's status does not change;
  CANCELLED  on request: the worker is killed, nothing is recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping

from libs.errors.domain_errors import DomainError, Unavailable
from services.validator.domain import policy_model as pm
from services.validator.domain import report as reports
from services.validator.domain import runs as r
from services.validator.domain.checks import Check
from services.validator.domain.context import CheckRefused, RunAborted, RunCancelled, RunContext
from services.validator.domain.policies import PolicySet
from services.validator.domain.ports import RegistryPort, WorkerPort
from services.validator.domain.results import ERROR, PASSED, SKIPPED, CheckResult, Outcome, verdict

log = logging.getLogger("causeway.validator.engine")
RECORD_ATTEMPTS = 4


class Notifier:
    """Wakes WatchValidationRun streams when a run gets a new event."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    def notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen, timeout)
            return self._version

    @property
    def version(self) -> int:
        return self._version


class RunControl:
    """In-memory handle on a run in flight: cancellation, and the point after which it is too late."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.reason = ""
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._finalizing = False
        self._ctx: RunContext | None = None

    def attach(self, ctx: RunContext) -> None:
        with self._lock:
            self._ctx = ctx
            if self.cancelled.is_set():
                ctx.kill_workers()

    def cancel(self, reason: str) -> bool:
        """False if the run is already recording its report (too late to cancel)."""
        with self._lock:
            if self._finalizing:
                return False
            self.reason = reason
            self.cancelled.set()
            if self._ctx is not None:
                self._ctx.kill_workers()
            return True

    def finalize(self) -> None:
        """From here on the run completes: RunCancelled if it was cancelled before."""
        with self._lock:
            if self.cancelled.is_set():
                raise RunCancelled()
            self._finalizing = True


class Engine:
    def __init__(
        self,
        *,
        store: r.RunStore,
        registry: RegistryPort,
        workers: WorkerPort,
        policies: PolicySet,
        checks: Mapping[str, Check],
        notifier: Notifier,
        runtime_info: Mapping[str, str],
        clock: Callable[[], dt.datetime] = r.utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.workers = workers
        self.policies = policies
        self.checks = dict(checks)
        self.notifier = notifier
        self.runtime_info = dict(runtime_info)
        self.clock = clock

    # ---- bookkeeping ----
    def emit(self, run: r.Run, kind: str, data: dict) -> None:
        self.store.append_event(run.run_id, self.clock(), kind, data)
        self.notifier.notify()

    def set_state(self, run: r.Run, state: str, message: str = "") -> None:
        run.state = state
        run.message = message
        if state in r.TERMINAL:
            run.finish_time = run.finish_time or self.clock()
        self.store.save(run)
        data = {"state": state, "message": message}
        if state == r.COMPLETED:
            data |= {"verdict": run.verdict, "report_digest": run.report_digest}
        self.emit(run, r.EVENT_STATE, data)

    # ---- the run ----
    def execute(self, run_id: str, control: RunControl) -> None:
        run = self.store.get(run_id)
        if run is None or run.state != r.QUEUED:
            control.finished.set()
            return
        ctx: RunContext | None = None
        try:
            policy = self.policies.get(run.policy_name)
            if policy.digest != run.policy_digest:
                raise RunAborted(f"policy {policy.name} changed since the run was accepted; start a new run")
            run.start_time = self.clock()
            self.set_state(run, r.RUNNING)
            ctx = self._context(run, policy, control)
            control.attach(ctx)
            results = self._checks(run, policy, ctx)
            self._complete(run, policy, ctx, results, control)
        except RunCancelled:
            self.set_state(run, r.CANCELLED, f"cancelled: {control.reason}" if control.reason else "cancelled")
        except RunAborted as err:
            self.set_state(run, r.ERRORED, str(err))
        except DomainError as err:
            self.set_state(run, r.ERRORED, f"{err.status}: {err.message}")
        except Exception:
            log.exception("run failed", extra={"run_id": run_id})
            self.set_state(run, r.ERRORED, "internal error in the validator; see its logs for run " + run_id)
        finally:
            if ctx is not None:
                ctx.close()
            control.finished.set()

    def _context(self, run: r.Run, policy: pm.Policy, control: RunControl) -> RunContext:
        version = self.registry.get_version(run.model_name, run.version)
        if version.artifact_digest != run.artifact_digest:
            raise RunAborted("the version's artifact digest changed since the run was accepted")
        champion = self.registry.get_version(*run.champion) if run.champion else None
        return RunContext(
            run_id=run.run_id,
            policy=policy,
            version=version,
            champion=champion,
            registry=self.registry,
            workers=self.workers,
            deadline=time.monotonic() + policy.timeout_seconds,
            cancelled=control.cancelled,
        )

    def _checks(self, run: r.Run, policy: pm.Policy, ctx: RunContext) -> list[CheckResult]:
        results: list[CheckResult] = []
        blocked = ""
        for index, spec in enumerate(policy.checks):
            ctx.check_cancelled()
            ctx.remaining()
            start, t0 = self.clock(), time.monotonic()
            progress = run.checks[index]
            if blocked:
                outcome = Outcome(SKIPPED, f"not run: {blocked}")
            else:
                progress.phase = r.IN_PROGRESS
                self.store.save(run)
                self.emit(run, r.EVENT_CHECK_STARTED, {"name": spec.name, "type": spec.type})
                outcome = self._run_check(ctx, spec)
            result = CheckResult.of(spec, outcome, start, time.monotonic() - t0)
            results.append(result)
            progress.phase, progress.status = r.DONE, result.status
            self.store.save(run)
            self.emit(run, r.EVENT_CHECK_FINISHED, {"result": result.to_dict()})
            if spec.type in pm.GATING_CHECKS and spec.required and result.status != PASSED and not blocked:
                blocked = f"required check {spec.name!r} did not pass"
        return results

    def _run_check(self, ctx: RunContext, spec: pm.CheckSpec) -> Outcome:
        try:
            return self.checks[spec.type].run(ctx, spec)
        except CheckRefused as err:
            return err.outcome
        except (RunCancelled, RunAborted):
            raise
        except Unavailable as err:
            raise RunAborted(f"the registry is unavailable: {err.message}") from err
        except DomainError as err:
            return Outcome(ERROR, f"{err.status}: {err.message}")
        except Exception as err:
            log.exception("check failed", extra={"run_id": ctx.run_id, "check": spec.name})
            return Outcome(ERROR, f"internal error in the {spec.type} check ({type(err).__name__})")

    def _runtime_info(self, ctx: RunContext) -> dict[str, str]:
        info = dict(self.runtime_info)
        worker = ctx.worker_runtime
        for key, value in (worker.get("runtime") or {}).items():
            info[str(key)] = str(value)
        sandbox = worker.get("sandbox") or {}
        if "uid" in sandbox:
            info["sandbox_uid"] = str(sandbox["uid"])
            info["sandbox_network"] = ",".join(sandbox.get("interfaces", [])) or "none"
        return info

    def _complete(
        self, run: r.Run, policy: pm.Policy, ctx: RunContext, results: list[CheckResult], control: RunControl
    ) -> None:
        run.verdict = verdict(results)
        assert run.start_time is not None  # execute() set it
        sealed = reports.build(
            reports.ReportInput(
                run_id=run.run_id,
                model=(run.model_name, run.version),
                artifact_digest=run.artifact_digest,
                format=run.format,
                policy_name=policy.name,
                policy_digest=policy.digest,
                environment=run.environment,
                champion=run.champion,
                verdict=run.verdict,
                checks=results,
                start_time=run.start_time,
                finish_time=self.clock(),
                runtime_info=self._runtime_info(ctx),
            )
        )
        ctx.close()  # nothing of the model is needed any more; free memory before recording
        control.finalize()
        self.store.save_report(run.run_id, sealed.json, sealed.digest)
        run.record_time = self._record(run, policy, sealed)
        run.report_digest = sealed.digest
        self.set_state(run, r.COMPLETED)

    def _record(self, run: r.Run, policy: pm.Policy, sealed: reports.SealedReport):
        for attempt in range(RECORD_ATTEMPTS):
            try:
                return self.registry.record_report(
                    model=(run.model_name, run.version),
                    artifact_digest=run.artifact_digest,
                    policy_name=policy.name,
                    policy_digest=policy.digest,
                    environment=run.environment,
                    run_id=run.run_id,
                    verdict=run.verdict,
                    report_json=sealed.json,
                    report_digest=sealed.digest,
                )
            except Unavailable as err:
                if attempt == RECORD_ATTEMPTS - 1:
                    raise RunAborted(f"the report could not be recorded: registry unavailable ({err.message})") from err
                time.sleep(2**attempt)
            except DomainError as err:
                raise RunAborted(f"the registry refused the report: {err.status}: {err.message}") from err
        raise RunAborted("the report could not be recorded")
