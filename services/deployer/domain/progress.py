"""What happens after the commit: pull requests, alias moves, the local runtime, recovery.

Cluster environments (aws, gcp): a direct commit is the deployment's end as far as the deployer
can see (Argo CD's auto-sync applies it; its sync status is not followed, there is no Argo CD API
client yet), so it is SUCCEEDED and the registry's environment alias moves. A pull-request commit
waits in AWAITING_MERGE until `reconcile` finds it on main. CLOUD_LOCAL: the runtime applies the
committed version on the local runners in the background (SYNCING / CANARY) and decides.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

from services.deployer.domain import commit_message, events
from services.deployer.domain.ports import AliasMover, DeploymentStore, PullRequests, Runtime
from services.deployer.domain.records import CanaryAnalysis, Deployment, GitChange, State
from services.deployer.domain.settings import DeployerSettings
from services.deployer.storage.gitops_repo import GitopsRepo, Published

log = logging.getLogger("causeway.deployer.progress")


def pull_request_body(d: Deployment) -> str:
    """The pull-request description: what, why, on which evidence, and how it rolls back."""
    gates = "\n".join(f"| {g.gate} | {g.status} | {g.message} |" for g in d.gates)
    return (
        f"## {d.kind.value.title()} {d.model.name} v{d.model.version} to {d.environment}/{d.cloud}\n\n"
        f"{d.reason}\n\n"
        f"- Requested by: {d.requested_by.describe()}\n"
        f"- Change request: {d.change_request or 'none'}\n"
        f"- Artifact: `{d.artifact_digest}`\n"
        f"- Validation report: `{d.validation_report_digest or 'none'}`\n"
        f"- Approvals: {', '.join(d.approval_ids) or 'none'}\n"
        f"- Previous version: {('v' + str(d.previous_model.version)) if d.previous_model else 'none'}\n"
        f"- Deployment: `{d.deployment_id}` (strategy {d.strategy.kind})\n\n"
        "| gate | status | detail |\n|---|---|---|\n"
        f"{gates}\n\n"
        "Merging makes Argo CD sync it. To undo after merge: `RollbackModel` (a new commit, no force push).\n"
    )


class Progress:
    def __init__(
        self,
        settings: DeployerSettings,
        store: DeploymentStore,
        repo: GitopsRepo,
        aliases: AliasMover | None,
        pull_requests: PullRequests | None = None,
        runtime: Runtime | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        workers: int = 2,
    ) -> None:
        self.settings = settings
        self.store = store
        self.repo = repo
        self.aliases = aliases
        self.pull_requests = pull_requests
        self.runtime = runtime
        self.clock = clock
        self._pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deployer-progress")
        self._running: set[futures.Future] = set()
        self._lock = threading.Lock()

    # ---- after a commit ---------------------------------------------------------------------
    def committed(self, d: Deployment, published: Published, direct: bool) -> Deployment:
        url = ""
        if not direct and self.pull_requests is not None:
            title = commit_message.render(d).splitlines()[0]
            url = self.pull_requests.open(
                published.branch, self.settings.pull_request_base, title, pull_request_body(d)
            )
        change = GitChange(
            repository=self.repo.location,
            branch=published.branch,
            commit_sha=published.commit,
            base_commit_sha=published.base,
            mode="direct" if direct else "pull_request",
            pull_request_url=url,
            paths=published.paths,
        )
        now = self.clock()
        if not direct:
            where = url or f"branch {published.branch} (no git host configured: open the pull request from it)"
            moved = d.moved(State.AWAITING_MERGE, f"pull request: {where}", now, git_change=change)
        elif d.cloud == "local":
            moved = d.moved(State.SYNCING, "committed; the local runtime is applying it", now, git_change=change)
        else:
            moved = d.moved(State.SUCCEEDED, "committed to main; Argo CD auto-sync applies it", now, git_change=change)
        details = {
            "commit": published.commit,
            "base_commit": published.base,
            "branch": published.branch,
            "mode": change.mode,
            "paths": list(published.paths),
            "validation_report_digest": d.validation_report_digest,
            "approval_ids": list(d.approval_ids),
            "pull_request_url": url,
            "target_revision": d.target_revision,
        }
        self.store.update(moved, [events.event("deployment.commit", moved, now, details=details)])
        if moved.state is State.SUCCEEDED:
            self._move_alias(moved)
        elif moved.state is State.SYNCING:
            self._start_runtime(moved)
        return moved

    def _move_alias(self, d: Deployment) -> None:
        if self.aliases is None:
            return
        reason = f"{d.kind.value} {d.deployment_id}: {d.reason}"[:500]
        try:
            self.aliases.move(d.model, d.environment, reason)
        except Exception as err:  # noqa: BLE001 - the deployment is live; the alias lagging is reported, not fatal
            log.warning("alias not moved", extra={"deployment_id": d.deployment_id, "error": str(err)})
            note = d.moved(d.state, f"{d.message}; the {d.environment} alias was not moved: {err}", self.clock())
            self.store.update(note, [events.event("deployment.alias", note, self.clock(), outcome="FAILURE")])

    # ---- the local runtime ------------------------------------------------------------------
    def _start_runtime(self, d: Deployment) -> None:
        if self.runtime is None:
            failed = d.moved(State.FAILED, "cloud local needs the local runtime, which is not configured", self.clock())
            self.store.update(failed, [events.event("deployment.fail", failed, self.clock(), outcome="FAILURE")])
            return
        future = self._pool.submit(self._run, d)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: futures.Future) -> None:
        with self._lock:
            self._running.discard(future)

    def _run(self, d: Deployment) -> None:
        current = {"d": d}

        def progress(state: State, message: str, analysis: CanaryAnalysis | None) -> None:
            now = self.clock()
            moved = current["d"].moved(state, message, now, canary=analysis or current["d"].canary)
            action = "deployment.canary_analysis" if analysis is not None else "deployment.state"
            details: dict[str, Any] = {"message": message}
            if analysis is not None:
                details |= {
                    "decision": analysis.decision,
                    "step": analysis.current_step,
                    "traffic_percent": analysis.traffic_percent,
                    "metrics": [
                        {
                            "metric": m.criterion.metric,
                            "stable": m.baseline_value,
                            "canary": m.canary_value,
                            "passed": m.passed,
                        }
                        for m in analysis.metrics
                    ],
                }
            self.store.update(moved, [events.event(action, moved, now, details=details)])
            current["d"] = moved

        try:
            assert self.runtime is not None
            self.runtime.apply(d, progress)
        except Exception as err:
            log.exception("local runtime failed", extra={"deployment_id": d.deployment_id})
            now = self.clock()
            failed = current["d"].moved(State.FAILED, f"the local runtime could not apply it: {err}", now)
            self.store.update(failed, [events.event("deployment.fail", failed, now, outcome="FAILURE")])
            return
        if current["d"].state is State.SUCCEEDED:
            self._move_alias(current["d"])

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until background runtime work is done (tests, shutdown)."""
        with self._lock:
            pending = list(self._running)
        futures.wait(pending, timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- pull requests and crash recovery -------------------------------------------------
    def _find_on_main(self, d: Deployment, head: str | None = None) -> str | None:
        """The main commit carrying this deployment (merge, squash or direct), by its trailer."""
        directory = f"{self.settings.env_dir(d.cloud, d.environment)}/{d.model.name}"
        for info in self.repo.log(f"{directory}/release.env", ref=head, limit=200):
            if commit_message.parse_trailers(info.message).get("Deployment-Id") == d.deployment_id:
                return info.sha
        return None

    def reconcile(self) -> None:
        """Advance deployments waiting for a merge whose commit has reached main."""
        waiting = [d for d in self.store.unfinished() if d.state is State.AWAITING_MERGE]
        if not waiting:
            return
        head = self.repo.refresh()  # once per call: for a remote this is a fetch
        for d in waiting:
            if head and self._find_on_main(d, head):
                self._landed(d)

    def _landed(self, d: Deployment) -> None:
        now = self.clock()
        if d.cloud == "local":
            moved = d.moved(State.SYNCING, "merged; the local runtime is applying it", now)
        else:
            moved = d.moved(State.SUCCEEDED, "merged to main; Argo CD auto-sync applies it", now)
        self.store.update(moved, [events.event("deployment.merge", moved, now)])
        if moved.state is State.SUCCEEDED:
            self._move_alias(moved)
        else:
            self._start_runtime(moved)

    def recover(self) -> None:
        """At start: finish what a crashed deployer left (found by the commit trailers in git)."""
        for d in self.store.unfinished():
            if d.state is State.PENDING:
                sha = self._find_on_main(d)
                if sha is None:
                    now = self.clock()
                    failed = d.moved(State.FAILED, "interrupted before its GitOps commit (deployer restarted)", now)
                    self.store.update(failed, [events.event("deployment.fail", failed, now, outcome="FAILURE")])
                    continue
                published = Published(sha, "", self.settings.pull_request_base, ())
                self.committed(d, published, direct=True)
            elif d.state in (State.SYNCING, State.CANARY) and d.cloud == "local":
                self._start_runtime(d)  # LoadModel is idempotent; a canary restarts its analysis
            elif d.state is State.AWAITING_MERGE and self._find_on_main(d):
                self._landed(d)
