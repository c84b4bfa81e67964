"""Commit messages of deployment commits: a human summary plus machine-readable trailers.

Every deployment commit names the model version, its artifact digest, the validation report and
approval digests the gates rested on, and the requesting identity, so `git log` alone is an
audit trail of what went where, on whose say-so, on what evidence. History is read back from the
trailers (git interpret-trailers format: "Key: value" lines in the last paragraph).
"""

from __future__ import annotations

from collections.abc import Mapping

from services.deployer.domain.records import Deployment, Kind

PREFIX = "Causeway-"


def _subject(d: Deployment) -> str:
    where = f"{d.environment}/{d.cloud}"
    if d.kind is Kind.PROMOTE:
        return f"promote: {d.model.name} v{d.model.version} from {d.source_environment} to {where}"
    if d.kind is Kind.ROLLBACK:
        return f"rollback: {d.model.name} in {where} to v{d.model.version} ({d.target_revision[:12]})"
    return f"deploy: {d.model.name} v{d.model.version} to {where}"


def trailers(d: Deployment) -> dict[str, str]:
    values = {
        "Deployment-Id": d.deployment_id,
        "Kind": d.kind.value,
        "Model": d.model.name,
        "Version": str(d.model.version),
        "Artifact-Digest": d.artifact_digest,
        "Environment": d.environment,
        "Cloud": d.cloud,
        "Strategy": d.strategy.kind,
        "Validation-Report": d.validation_report_digest or "none",
        "Approvals": ",".join(d.approval_ids) or "none",
        "Requested-By": d.requested_by.describe(),
        "Change-Request": d.change_request or "none",
    }
    if d.kind is Kind.PROMOTE:
        values["Source-Environment"] = d.source_environment
    if d.kind is Kind.ROLLBACK:
        values["Target-Revision"] = d.target_revision
    if d.previous_model is not None:
        values["Previous-Version"] = str(d.previous_model.version)
    return values


def render(d: Deployment) -> str:
    body = " ".join(d.reason.split())  # one paragraph: the trailers must stay the last one
    lines = [_subject(d), "", body, ""]
    lines += [f"{PREFIX}{key}: {value}" for key, value in trailers(d).items()]
    return "\n".join(lines) + "\n"


def parse_trailers(message: str) -> Mapping[str, str]:
    """Causeway-* trailers of a commit message, without the prefix; {} for foreign commits."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return {}
    out = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(":")
        if sep and key.startswith(PREFIX):
            out[key[len(PREFIX) :]] = value.strip()
    return out
