"""Change builders: given a snapshot of the GitOps branch, the files a deployment writes.

A builder runs once per publication attempt, on the branch head at that moment. It refuses
(Aborted) when the head shows a conflicting change to the same model in the same environment
made since the request was accepted; changes to other models are kept as they are (each model
is a directory of its own: no file is shared between models).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from libs.errors.domain_errors import Aborted, FailedPrecondition
from services.deployer.domain import commit_message, manifests
from services.deployer.domain.records import Deployment, ModelRef
from services.deployer.storage.gitops_repo import Change, Snapshot

RELEASE_FILE = "release.env"


@dataclasses.dataclass(frozen=True)
class Live:
    """What a model directory pins at one commit."""

    model: ModelRef
    artifact_digest: str
    deployment_id: str


def live_at(snapshot: Snapshot, directory: str) -> Live | None:
    content = snapshot.read(f"{directory}/{RELEASE_FILE}")
    if content is None:
        return None
    values = manifests.parse_release_env(content)
    try:
        model = ModelRef(values["CAUSEWAY_MODEL_NAME"], int(values["CAUSEWAY_MODEL_VERSION"]))
        return Live(model, values["CAUSEWAY_MODEL_ARTIFACT_DIGEST"], values.get("CAUSEWAY_DEPLOYMENT_ID", ""))
    except (KeyError, ValueError):
        raise FailedPrecondition(f"{directory}/{RELEASE_FILE} is malformed; fix it in git first") from None


def _guard(snapshot: Snapshot, directory: str, expected: Live | None, what: str) -> None:
    """Refuse if the model's pin moved since the request was accepted (a concurrent deployment)."""
    now = live_at(snapshot, directory)
    if (now and now.deployment_id) != (expected and expected.deployment_id):
        where = f"v{now.model.version} by deployment {now.deployment_id}" if now else "nothing"
        raise Aborted(f"{what}: the GitOps tree changed concurrently for this model (now {where}); retry")


def deploy_change(
    deployment: Deployment,
    release: manifests.Release,
    env_dir: str,
    expected: Live | None,
) -> Callable[[Snapshot], Change]:
    """Write the model directory for `release` (the deploy and promote case)."""
    directory = f"{env_dir}/{deployment.model.name}"

    def build(snapshot: Snapshot) -> Change:
        _guard(snapshot, directory, expected, "deploy")
        files: dict[str, bytes | None] = {f"{directory}/{n}": c for n, c in manifests.render(release).items()}
        # Files of another strategy's shape (e.g. a canary's analysis.yaml) go.
        for stale in snapshot.files_under(directory):
            files.setdefault(stale, None)
        return Change(files, commit_message.render(deployment), *author_of(deployment))

    return build


def restore_change(
    deployment: Deployment,
    target: Snapshot,
    env_dir: str,
    expected: Live | None,
) -> Callable[[Snapshot], Change]:
    """Make the model directory exactly what it was at `target` (the rollback case)."""
    directory = f"{env_dir}/{deployment.model.name}"
    wanted = target.files_under(directory)
    if not wanted:
        raise FailedPrecondition(f"revision {target.commit} has no {directory}")

    def build(snapshot: Snapshot) -> Change:
        _guard(snapshot, directory, expected, "rollback")
        files: dict[str, bytes | None] = {path: None for path in snapshot.files_under(directory) if path not in wanted}
        files.update(wanted)
        return Change(files, commit_message.render(deployment), *author_of(deployment))

    return build


def author_of(deployment: Deployment) -> tuple[str, str]:
    """The requester is the commit's author; the deployer is its committer."""
    actor = deployment.requested_by
    return actor.display_name or actor.subject, actor.email or f"{actor.subject.replace(':', '-')}@causeway.localhost"
