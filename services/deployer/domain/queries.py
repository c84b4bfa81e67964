"""Reads: one deployment, lists, what is live, and the revision history (from git, not the DB).

History is `git log` of the model's release file on main: every commit that changed what a model
pins in an environment is a revision, whoever made it; the deployer's own commits carry the
trailers that say who asked and on which evidence. Page tokens are bound to their filters.
"""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import hashlib
import json
from collections.abc import Callable

from libs.errors.domain_errors import InvalidArgument, NotFound
from services.deployer.domain import changes, commit_message
from services.deployer.domain.ports import DeploymentStore, GateChecker, ListFilter, Runtime
from services.deployer.domain.records import (
    Deployment,
    Kind,
    ModelRef,
    Revision,
    check_cloud,
    check_environment,
    check_model_name,
)
from services.deployer.domain.settings import DeployerSettings
from services.deployer.storage.gitops_repo import GitopsRepo

DEFAULT_PAGE, MAX_PAGE = 50, 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


def _fingerprint(scope: object) -> str:
    return hashlib.sha256(json.dumps(scope, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(offset: int, scope: object) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "s": _fingerprint(scope)}).encode()).decode()


def decode_token(token: str, scope: object) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, fingerprint = int(data["o"]), data["s"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token is malformed") from None
    if fingerprint != _fingerprint(scope) or offset < 0:
        raise InvalidArgument("page_token belongs to another query: keep the other fields unchanged")
    return offset


class Queries:
    def __init__(
        self,
        settings: DeployerSettings,
        store: DeploymentStore,
        repo: GitopsRepo,
        gates: GateChecker,
        runtime: Runtime | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.repo = repo
        self.gates = gates
        self.runtime = runtime
        self.clock = clock

    def get(self, deployment_id: str) -> Deployment:
        found = self.store.get(deployment_id) if deployment_id else None
        if found is None:
            raise NotFound(f"no deployment {deployment_id!r}")
        return found

    def by_request_id(self, request_id: str) -> Deployment | None:
        return self.store.by_request_id(request_id)

    def list(self, flt: ListFilter, size: int, token: str) -> tuple[list[Deployment], str]:
        size = page_size(size)
        offset = decode_token(token, ("list", flt))
        rows = self.store.list(flt, offset, size + 1)
        more = len(rows) > size
        return rows[:size], encode_token(offset + size, ("list", flt)) if more else ""

    def revisions(
        self, model_name: str, environment: str, cloud: str, skip: int = 0, limit: int = 200
    ) -> builtins.list[Revision]:
        """Revisions of a model in one environment and cloud, newest (live) first."""
        directory = f"{self.settings.env_dir(cloud, environment)}/{model_name}"
        commits = self.repo.log(f"{directory}/release.env", skip=skip, limit=limit + 1)
        revisions: builtins.list[Revision] = []
        for i, info in enumerate(commits[:limit]):
            live = changes.live_at(self.repo.snapshot(info.sha), directory)
            if live is None:  # the model left the environment in this commit
                continue
            trailers = commit_message.parse_trailers(info.message)
            kind = trailers.get("Kind", "")
            newer = commits[i - 1].time if i > 0 else None
            revisions.append(
                Revision(
                    revision=info.sha,
                    model=live.model,
                    artifact_digest=live.artifact_digest,
                    deployment_id=trailers.get("Deployment-Id", ""),
                    kind=Kind(kind) if kind in {k.value for k in Kind} else Kind.DEPLOY,
                    requested_by=trailers.get("Requested-By", info.author),
                    live_time=info.time,
                    end_time=newer if skip == 0 or i > 0 else None,
                )
            )
        return revisions

    def history(
        self, model_name: str, environment: str, cloud: str, size: int, token: str
    ) -> tuple[builtins.list[tuple[Revision, bool]], str]:
        """A page of revisions with whether each version passes the gates now."""
        check_model_name(model_name)
        check_environment(environment)
        check_cloud(cloud)
        size = page_size(size)
        scope = ("history", model_name, environment, cloud)
        offset = decode_token(token, scope)
        revisions = self.revisions(model_name, environment, cloud, skip=offset, limit=size + 1)
        more = len(revisions) > size
        decisions: dict[ModelRef, bool] = {}
        out = []
        for revision in revisions[:size]:
            if revision.model not in decisions:
                try:
                    decisions[revision.model] = self.gates.check(revision.model, environment).allowed
                except NotFound:
                    decisions[revision.model] = False
            out.append((revision, decisions[revision.model]))
        return out, encode_token(offset + size, scope) if more else ""

    def status(self, model_name: str, environment: str, cloud: str) -> dict:
        """What is live: version, digest, revision, and the runtime's view for CLOUD_LOCAL."""
        check_model_name(model_name)
        check_environment(environment)
        check_cloud(cloud)
        revisions = self.revisions(model_name, environment, cloud, limit=1)
        active = self.store.active(model_name, environment, cloud)
        status: dict = {"observe_time": self.clock(), "active_deployment_id": active.deployment_id if active else ""}
        if not revisions:
            return status | {"live": None, "sync": "unknown", "health": "missing", "traffic": []}
        live = revisions[0]
        status |= {"live": live.model, "artifact_digest": live.artifact_digest, "revision": live.revision}
        if cloud == "local" and self.runtime is not None:
            runtime = self.runtime.status(model_name, environment)
            synced = runtime.get("version") == live.model.version
            status |= {
                "sync": "synced" if synced else "out_of_sync",
                "health": "healthy" if runtime.get("healthy") else ("progressing" if active else "degraded"),
                "traffic": runtime.get("traffic") or [(live.model.version, 100)],
            }
        else:
            # Argo CD's view is not queried (no Argo CD API client): sync and health are unknown.
            status |= {"sync": "unknown", "health": "unknown", "traffic": [(live.model.version, 100)]}
        return status
