"""Registered models and their immutable versions, on MLflow's Model Registry.

Every fact the registry adds to MLflow's model (owner team, creator, artifact digest, format,
signature, lineage, baseline, state) lives in reserved tags written in the same MLflow call
that creates the object, so a version is created with all its facts in one transaction: there is
never a half-registered version to see or to clean up.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from libs.auth.principal import Principal
from libs.errors.domain_errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.registry.domain import naming, tags
from services.registry.domain.auditing import Auditor
from services.registry.domain.records import (
    ARCHIVED,
    FORMATS,
    READY,
    ActorRecord,
    AliasRecord,
    ModelVersionRecord,
    RegisteredModelRecord,
)
from services.registry.storage.mlflow_registry import MlflowRegistry, quote


class ArtifactLookup(Protocol):
    """What the catalog needs to know about an uploaded artifact: its layout ("FILE"/"TAR")."""

    def layout_of(self, digest: str) -> str | None: ...


def _time(ms: int | None) -> dt.datetime:
    return dt.datetime.fromtimestamp((ms or 0) / 1000, dt.UTC)


def _is_admin(principal: Principal) -> bool:
    return principal.has_any_role("platform-admin")


class ModelCatalog:
    def __init__(self, mlflow: MlflowRegistry, auditor: Auditor, artifacts: ArtifactLookup, issuer: str = "") -> None:
        self.mlflow = mlflow
        self.auditor = auditor
        self.artifacts = artifacts
        self.issuer = issuer
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[name]

    def _actor(self, principal: Principal) -> ActorRecord:
        return ActorRecord.of(principal, self.issuer)

    # ---- registered models -------------------------------------------------------------

    def require_team(self, principal: Principal, owner_team: str, action: str) -> None:
        """Only members of the owning team (or platform admins) change a model."""
        if owner_team in principal.teams or _is_admin(principal):
            return
        raise PermissionDenied(
            f"{principal.subject} is not a member of team {owner_team!r}, which owns this model; "
            f"only its members may {action}"
        )

    def create_model(
        self, principal: Principal, name: str, description: str, owner_team: str, user_tags: dict[str, str]
    ) -> RegisteredModelRecord:
        naming.model_name(name)
        naming.team_name(owner_team)
        naming.text(description, "description", naming.MAX_DESCRIPTION)
        clean = naming.tags(user_tags)
        self.require_team(principal, owner_team, "register models for it")
        actor = self._actor(principal)
        model_tags = clean | {tags.OWNER_TEAM: owner_team, tags.CREATED_BY: tags.dumps(actor.to_dict())}
        self.mlflow.create_model(name, description, model_tags)
        self.auditor.record(principal, "model.create", f"models/{name}", {"owner_team": owner_team})
        return self.get_model(name)

    def get_model(self, name: str) -> RegisteredModelRecord:
        naming.model_name(name)
        return self._model_record(self.mlflow.get_model(name))

    def _model_record(self, entity) -> RegisteredModelRecord:
        """From MLflow's entity alone (it carries the latest version per stage and the aliases)."""
        latest_version = max((int(v.version) for v in entity.latest_versions or ()), default=0)
        raw = dict(entity.tags or {})
        aliases = []
        for alias, version in sorted((entity.aliases or {}).items()):
            info = json.loads(raw.get(tags.ALIAS_PREFIX + alias, "{}"))
            aliases.append(
                AliasRecord(
                    alias=alias,
                    version=int(version),
                    assigned_by=ActorRecord.from_dict(info["assigned_by"]) if "assigned_by" in info else None,
                    assign_time=dt.datetime.fromisoformat(info["assign_time"]) if "assign_time" in info else None,
                )
            )
        return RegisteredModelRecord(
            name=entity.name,
            description=entity.description or "",
            owner_team=raw.get(tags.OWNER_TEAM, ""),
            tags=tags.user_tags(raw),
            latest_version=int(latest_version or 0),
            aliases=aliases,
            created_by=ActorRecord.from_dict(json.loads(raw.get(tags.CREATED_BY, "{}"))),
            create_time=_time(entity.creation_timestamp),
            update_time=_time(entity.last_updated_timestamp),
        )

    def update_model(self, principal: Principal, name: str, description: str | None, owner_team: str | None):
        model = self.get_model(name)
        self.require_team(principal, model.owner_team, "change it")
        changes: dict[str, Any] = {}
        if description is not None:
            naming.text(description, "description", naming.MAX_DESCRIPTION)
            self.mlflow.update_model_description(name, description)
            changes["description"] = True
        if owner_team is not None:
            naming.team_name(owner_team)
            self.mlflow.set_model_tag(name, tags.OWNER_TEAM, owner_team)
            changes["owner_team"] = {"from": model.owner_team, "to": owner_team}
        self.auditor.record(principal, "model.update", f"models/{name}", changes)
        return self.get_model(name)

    # ---- versions ----------------------------------------------------------------------

    def create_version(
        self,
        principal: Principal,
        name: str,
        artifact_digest: str,
        model_format: str,
        metadata: dict[str, Any],
        user_tags: dict[str, str],
        description: str,
        request_id: str = "",
    ) -> ModelVersionRecord:
        """Register the next version; a retry with the same request_id returns the same version."""
        naming.model_name(name, "model_name")
        if model_format not in FORMATS:
            raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}")
        from libs.artifacts.blob_store import check_digest

        check_digest(artifact_digest)
        clean = naming.tags(user_tags)
        naming.text(description, "description", naming.MAX_DESCRIPTION)
        naming.text(request_id, "request_id", 128)
        encoded = tags.dumps(metadata)
        if len(encoded) > tags.MAX_METADATA_CHARS:
            raise InvalidArgument(
                f"signature, lineage, baseline and metrics take {len(encoded)} characters encoded, more than "
                f"the limit of {tags.MAX_METADATA_CHARS}: summarise the baseline (fewer histogram bins or features)"
            )
        model = self.get_model(name)
        self.require_team(principal, model.owner_team, "register versions of it")
        layout = self.artifacts.layout_of(artifact_digest)
        if layout is None:
            raise FailedPrecondition(
                f"no artifact sha256:{artifact_digest} has been uploaded: upload it with ArtifactService first"
            )
        if (model_format == "MLFLOW_MODEL") != (layout == "TAR"):
            raise InvalidArgument(
                f"format {model_format} does not fit an artifact of layout {layout}: MLflow model directories "
                "are uploaded as TAR, every other format as a single FILE"
            )
        lineage = metadata.get("lineage", {})
        parent = lineage.get("parent")
        if parent:
            self.get_version(
                naming.model_name(parent.get("name", ""), "lineage.parent.name"), int(parent.get("version", 0))
            )
        actor = self._actor(principal)
        version_tags = clean | {
            tags.ARTIFACT: artifact_digest,
            tags.FORMAT: model_format,
            tags.CREATED_BY: tags.dumps(actor.to_dict()),
            tags.CREATED_BY_SUBJECT: principal.subject,
            tags.METADATA: encoded,
            tags.STATE: READY,
        }
        if request_id:
            version_tags[tags.REQUEST_ID] = request_id
        if lineage.get("training_run_id"):
            version_tags[tags.TRAINING_RUN] = lineage["training_run_id"]
        if lineage.get("code", {}).get("commit_sha"):
            version_tags[tags.CODE_COMMIT] = lineage["code"]["commit_sha"]
        if parent:
            version_tags[tags.PARENT] = f"{parent['name']}/{int(parent['version'])}"
        for dataset in lineage.get("datasets", []):
            digest = dataset.get("digest", {}).get("hex", "")
            if digest:
                version_tags[tags.DATASET_PREFIX + check_digest(digest)] = "1"
        with self._lock(name):
            if request_id:
                existing, _ = self.mlflow.search_versions(
                    f"name = '{quote(name)}' and tags.`{tags.REQUEST_ID}` = '{quote(request_id)}'", 1, None
                )
                if existing:
                    return self._version_record(existing[0], self._aliases_of(name))
            entity = self.mlflow.create_version(
                name, tags.ARTIFACT_SOURCE_PREFIX + artifact_digest, version_tags, description
            )
        record = self._version_record(entity, {})
        self.auditor.record(
            principal,
            "model_version.create",
            record.ref,
            {"format": model_format, "request_id": request_id},
            payload_digest=artifact_digest,
        )
        return record

    def _aliases_of(self, name: str) -> dict[str, int]:
        return {alias: int(v) for alias, v in (self.mlflow.get_model(name).aliases or {}).items()}

    def get_version(self, name: str, version: int) -> ModelVersionRecord:
        naming.model_name(name)
        naming.version_number(version)
        entity = self.mlflow.get_version(name, version)
        # MLflow fills a single version's aliases on get (not on search).
        return self._version_record(entity, {alias: version for alias in entity.aliases or ()})

    def _version_record(self, entity, aliases: dict[str, int]) -> ModelVersionRecord:
        raw = dict(entity.tags or {})
        if tags.ARTIFACT not in raw:
            raise NotFound(f"model {entity.name} version {entity.version} was not registered through Causeway")
        archival = raw.get(tags.ARCHIVAL)
        version = int(entity.version)
        return ModelVersionRecord(
            name=entity.name,
            version=version,
            state=raw.get(tags.STATE, READY),
            description=entity.description or "",
            artifact_digest=raw[tags.ARTIFACT],
            format=raw.get(tags.FORMAT, ""),
            metadata=json.loads(raw.get(tags.METADATA, "{}")),
            tags=tags.user_tags(raw),
            aliases=sorted(alias for alias, v in aliases.items() if v == version),
            created_by=ActorRecord.from_dict(json.loads(raw.get(tags.CREATED_BY, "{}"))),
            create_time=_time(entity.creation_timestamp),
            update_time=_time(entity.last_updated_timestamp),
            archival=json.loads(archival) if archival else None,
        )

    def update_version(self, principal: Principal, name: str, version: int, description: str) -> ModelVersionRecord:
        record = self.get_version(name, version)
        self.require_team(principal, self.get_model(name).owner_team, "change its versions")
        naming.text(description, "description", naming.MAX_DESCRIPTION)
        self.mlflow.update_version_description(name, version, description)
        self.auditor.record(principal, "model_version.update", record.ref, {"description": True})
        return self.get_version(name, version)

    def archive_version(self, principal: Principal, name: str, version: int, reason: str) -> ModelVersionRecord:
        naming.text(reason, "reason", naming.MAX_REASON, required=True)
        record = self.get_version(name, version)
        self.require_team(principal, self.get_model(name).owner_team, "archive its versions")
        if record.state == ARCHIVED:
            raise FailedPrecondition(f"{record.ref} is already archived")
        if record.aliases:
            raise FailedPrecondition(
                f"{record.ref} is still the {', '.join(record.aliases)} alias: move the alias first"
            )
        archival = {
            "archived_by": self._actor(principal).to_dict(),
            "archive_time": dt.datetime.now(dt.UTC).isoformat(),
            "reason": reason,
        }
        self.mlflow.set_version_tag(name, version, tags.ARCHIVAL, tags.dumps(archival))
        self.mlflow.set_version_tag(name, version, tags.STATE, ARCHIVED)
        self.auditor.record(principal, "model_version.archive", record.ref, {"reason": reason})
        return self.get_version(name, version)

    # ---- tags --------------------------------------------------------------------------

    def set_tag(self, principal: Principal, name: str, version: int | None, key: str, value: str) -> dict[str, str]:
        naming.tag_key(key)
        naming.text(value, f"tag {key!r} value", naming.MAX_TAG_VALUE)
        return self._change_tag(principal, name, version, key, value)

    def delete_tag(self, principal: Principal, name: str, version: int | None, key: str) -> dict[str, str]:
        naming.tag_key(key)
        return self._change_tag(principal, name, version, key, None)

    def _change_tag(self, principal: Principal, name: str, version: int | None, key: str, value: str | None):
        model = self.get_model(name)
        self.require_team(principal, model.owner_team, "tag it")
        if version is None:
            current, subject = model.tags, f"models/{name}"
        else:
            record = self.get_version(name, version)
            current, subject = record.tags, record.ref
        if value is None and key not in current:
            raise NotFound(f"{subject} has no tag {key!r}")
        if len(current) >= naming.MAX_TAGS and key not in current and value is not None:
            raise InvalidArgument(f"{subject} already has {naming.MAX_TAGS} tags")
        if version is None:
            setter: Callable[[], None] = (
                (lambda: self.mlflow.set_model_tag(name, key, value))
                if value is not None
                else (lambda: self.mlflow.delete_model_tag(name, key))
            )
        else:
            setter = (
                (lambda: self.mlflow.set_version_tag(name, version, key, value))
                if value is not None
                else (lambda: self.mlflow.delete_version_tag(name, version, key))
            )
        setter()
        self.auditor.record(principal, "tag.set" if value is not None else "tag.delete", subject, {"key": key})
        return self.get_model(name).tags if version is None else self.get_version(name, version).tags
