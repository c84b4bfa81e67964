"""Deploy, promote, roll back, abort: gates first, then one atomic GitOps commit, then progress.

Every mutation: (1) validates; (2) asks the registry's gates (refusals are audited and raised as
GatesBlocked); (3) stores the deployment PENDING, which also claims the model + environment +
cloud (one in progress at a time); (4) commits the change (direct on main, or a pull-request
branch) with the requester as author and the evidence in trailers; (5) records the commit and
its audit event in the same store transaction; (6) hands over to `Progress` (alias moves, the
local runtime, pull-request tracking). A crash between (3) and (5) is repaired at start by
`Progress.recover`, which finds the commit by its Deployment-Id trailer or fails the record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable

from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound
from services.deployer.domain import changes, events, failpoints, manifests
from services.deployer.domain.ports import DeploymentStore, GateChecker, GatesBlocked, PullRequests
from services.deployer.domain.progress import Progress
from services.deployer.domain.queries import Queries
from services.deployer.domain.records import (
    Actor,
    Deployment,
    GateCheck,
    GitChange,
    Kind,
    ModelRef,
    Revision,
    State,
    Strategy,
    check_cloud,
    check_environment,
    check_model_name,
)
from services.deployer.domain.settings import DeployerSettings
from services.deployer.storage.gitops_repo import GitopsRepo

MAX_REASON = 2000
DIRECT = Strategy()


@dataclasses.dataclass(frozen=True)
class Request:
    """The common part of deploy, promote and rollback requests."""

    environment: str
    cloud: str
    reason: str
    change_request: str = ""
    request_id: str = ""
    strategy: Strategy = DIRECT


class Deployer:
    def __init__(
        self,
        settings: DeployerSettings,
        store: DeploymentStore,
        repo: GitopsRepo,
        gates: GateChecker,
        progress: Progress,
        queries: Queries,
        pull_requests: PullRequests | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.repo = repo
        self.gates = gates
        self.progress = progress
        self.queries = queries
        self.pull_requests = pull_requests
        self.clock = clock

    # ---- requests -----------------------------------------------------------------------------
    def deploy(self, actor: Actor, model: ModelRef, req: Request) -> Deployment:
        check_model_name(model.name)
        if model.version < 1:
            raise InvalidArgument("model.version must be >= 1")
        return self._submit(actor, Kind.DEPLOY, model, req)

    def promote(self, actor: Actor, model_name: str, source_environment: str, req: Request) -> Deployment:
        check_model_name(model_name)
        check_environment(source_environment, "source_environment")
        self._check_request(req)
        if source_environment == req.environment:
            raise InvalidArgument("source and target environment must differ")
        live = changes.live_at(
            self.repo.snapshot(self.repo.refresh()),
            f"{self.settings.env_dir(req.cloud, source_environment)}/{model_name}",
        )
        if live is None:
            raise NotFound(f"nothing of {model_name} is live in {source_environment}/{req.cloud} to promote")
        return self._submit(actor, Kind.PROMOTE, live.model, req, source_environment=source_environment)

    def rollback(self, actor: Actor, model_name: str, target_revision: str, req: Request) -> Deployment:
        check_model_name(model_name)
        self._check_request(req)
        if target_revision and not (7 <= len(target_revision) <= 40 and _is_hex(target_revision)):
            raise InvalidArgument("target_revision must be a commit sha (hex) from ListDeploymentHistory")
        existing = self._replay(req)
        if existing:
            return existing
        history = self.queries.revisions(model_name, req.environment, req.cloud)
        if len(history) < 2:
            raise NotFound(f"{model_name} has no earlier revision in {req.environment}/{req.cloud}")
        live, earlier = history[0], history[1:]
        target: Revision | None
        check: GateCheck | None
        if target_revision:
            matches = [r for r in earlier if r.revision.startswith(target_revision)]
            if not matches:
                raise NotFound(f"{target_revision} is not an earlier revision of {model_name} in {req.environment}")
            target = matches[0]
            if not target.deployment_id:
                raise FailedPrecondition(
                    f"revision {target.revision} was not written by the deployer: not pre-authorized"
                )
            check = self.gates.check(target.model, req.environment)
        else:
            target, check = None, None
            for candidate in earlier:
                if candidate.deployment_id and candidate.model.version != live.model.version:
                    check = self.gates.check(candidate.model, req.environment)
                    if check.allowed:
                        target = candidate
                        break
            if target is None or check is None:
                raise NotFound(f"no earlier revision of {model_name} in {req.environment} still passes the gates")
        strategy = Strategy()  # rollbacks are always direct
        return self._submit(
            actor, Kind.ROLLBACK, target.model, dataclasses.replace(req, strategy=strategy), check=check, target=target
        )

    def abort(self, actor: Actor, deployment_id: str, reason: str) -> Deployment:
        if not reason.strip():
            raise InvalidArgument("reason is required")
        deployment = self.queries.get(deployment_id)
        if deployment.state.terminal:
            raise FailedPrecondition(f"deployment {deployment_id} is already {deployment.state.value}")
        if deployment.state is State.AWAITING_MERGE and deployment.git_change:
            if self.pull_requests and deployment.git_change.pull_request_url:
                self.pull_requests.close(
                    deployment.git_change.pull_request_url, f"aborted by {actor.subject}: {reason}"
                )
        elif deployment.state in (State.CANARY, State.SYNCING) and deployment.cloud == "local":
            if self.progress.runtime is None or not self.progress.runtime.abort(deployment_id):
                raise FailedPrecondition("nothing to abort: the change is applied; use RollbackModel")
            return self.queries.get(deployment_id)
        else:
            raise FailedPrecondition(f"deployment {deployment_id} is {deployment.state.value}; use RollbackModel")
        now = self.clock()
        aborted = deployment.moved(State.ABORTED, f"aborted by {actor.subject}: {reason}", now)
        self.store.update(aborted, [events.event("deployment.abort", aborted, now, actor=actor)])
        return aborted

    # ---- the common path ---------------------------------------------------------------------
    def _check_request(self, req: Request) -> None:
        check_environment(req.environment)
        check_cloud(req.cloud)
        if not req.reason.strip():
            raise InvalidArgument("reason is required (it goes into the commit message and the audit chain)")
        if len(req.reason) > MAX_REASON:
            raise InvalidArgument(f"reason is longer than {MAX_REASON} characters")
        if req.environment in self.settings.change_request_environments and not req.change_request.strip():
            raise InvalidArgument(f"change_request is required for {req.environment}")

    def _replay(self, req: Request) -> Deployment | None:
        return self.queries.by_request_id(req.request_id) if req.request_id else None

    def _submit(
        self,
        actor: Actor,
        kind: Kind,
        model: ModelRef,
        req: Request,
        *,
        source_environment: str = "",
        check=None,
        target=None,
    ) -> Deployment:
        self._check_request(req)
        existing = self._replay(req)
        if existing:
            return existing
        check = check or self.gates.check(model, req.environment)
        now = self.clock()
        if not check.allowed:
            self.store.record_events([events.refusal(check, actor, kind.value, req.cloud, now)])
            raise GatesBlocked(check, f"{kind.value} refused")
        env_dir = self.settings.env_dir(req.cloud, req.environment)
        directory = f"{env_dir}/{model.name}"
        head = self.repo.snapshot(self.repo.refresh())
        live = changes.live_at(head, directory)
        if live and live.model == model and kind is not Kind.ROLLBACK:
            raise FailedPrecondition(f"{model} is already live in {req.environment}/{req.cloud}")
        direct = kind is Kind.ROLLBACK or req.environment in self.settings.direct_commit_environments
        deployment = Deployment(
            deployment_id=str(uuid.uuid4()),
            kind=kind,
            model=model,
            artifact_digest=check.artifact_digest,
            environment=req.environment,
            cloud=req.cloud,
            strategy=req.strategy,
            state=State.PENDING,
            requested_by=actor,
            reason=" ".join(req.reason.split()),
            create_time=now,
            update_time=now,
            message="writing the GitOps change",
            gates=check.gates,
            source_environment=source_environment,
            target_revision=target.revision if target else "",
            previous_model=live.model if live else None,
            change_request=req.change_request.strip(),
            request_id=req.request_id,
            validation_report_digest=check.validation_report_digest,
            approval_ids=check.approval_ids,
        )
        stored = self.store.create(deployment, [events.event("deployment.accept", deployment, now)])
        if stored.deployment_id != deployment.deployment_id:
            return stored  # a concurrent retry with the same request_id won
        failpoints.hit("deployment-stored")
        try:
            if target is not None:
                build = changes.restore_change(deployment, self.repo.snapshot(target.revision), env_dir, live)
            else:
                build = changes.deploy_change(deployment, self._release(deployment), env_dir, live)
            branch = None if direct else self._branch_name(deployment)
            published = self.repo.update(
                build, branch=branch, base_branch=None if direct else self.settings.pull_request_base
            )
        except Exception as err:
            failed = deployment.moved(State.FAILED, f"the GitOps change was not written: {err}", self.clock())
            self.store.update(failed, [events.event("deployment.fail", failed, self.clock(), outcome="FAILURE")])
            raise
        return self.progress.committed(deployment, published, direct)

    def _release(self, d: Deployment) -> manifests.Release:
        return manifests.Release(
            model_name=d.model.name,
            version=d.model.version,
            artifact_digest=d.artifact_digest,
            deployment_id=d.deployment_id,
            environment=d.environment,
            cloud=d.cloud,
            strategy=d.strategy,
            runner_image=self.settings.runner_image,
            prometheus_url=self.settings.prometheus_url,
            registry_address=self.settings.registry_address,
        )

    @staticmethod
    def _branch_name(d: Deployment) -> str:
        return (
            f"causeway/{d.kind.value}/{d.environment}-{d.cloud}/{d.model.name}-v{d.model.version}-{d.deployment_id[:8]}"
        )


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def git_change(repo: GitopsRepo, published, direct: bool, url: str = "") -> GitChange:
    return GitChange(
        repository=repo.location,
        branch=published.branch,
        commit_sha=published.commit,
        base_commit_sha=published.base,
        mode="direct" if direct else "pull_request",
        pull_request_url=url,
        paths=published.paths,
    )
