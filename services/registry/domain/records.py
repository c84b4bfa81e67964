"""The registry's domain records (plain data; the api layer maps them to and from protos)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from libs.auth.principal import Principal

ALIASES = ("dev", "test", "prod", "champion")
ENVIRONMENTS = ("dev", "test", "prod")
FORMATS = ("SAFETENSORS", "TORCHSCRIPT", "ONNX", "TORCH_STATE_DICT", "MLFLOW_MODEL", "PICKLE")
READY, ARCHIVED = "READY", "ARCHIVED"


@dataclasses.dataclass(frozen=True)
class ActorRecord:
    """Who did something, as recorded (from the verified token, never from a request field)."""

    subject: str
    display_name: str = ""
    kind: str = "user"  # "user" or "service"
    roles: tuple[str, ...] = ()
    issuer: str = ""

    @classmethod
    def of(cls, principal: Principal, issuer: str = "") -> ActorRecord:
        return cls(principal.subject, principal.display, principal.kind, tuple(sorted(principal.roles)), issuer)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"roles": list(self.roles)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActorRecord:
        return cls(
            subject=data.get("subject", ""),
            display_name=data.get("display_name", ""),
            kind=data.get("kind", "user"),
            roles=tuple(data.get("roles", ())),
            issuer=data.get("issuer", ""),
        )


@dataclasses.dataclass(frozen=True)
class AliasRecord:
    alias: str
    version: int
    assigned_by: ActorRecord | None = None
    assign_time: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class RegisteredModelRecord:
    name: str
    description: str
    owner_team: str
    tags: dict[str, str]
    latest_version: int
    aliases: list[AliasRecord]
    created_by: ActorRecord
    create_time: dt.datetime
    update_time: dt.datetime


@dataclasses.dataclass(frozen=True)
class ModelVersionRecord:
    """An immutable model version. `metadata` holds signature, lineage, training_baseline,
    golden_dataset and training_metrics in proto3 JSON form (field names as in model.proto)."""

    name: str
    version: int
    state: str
    description: str
    artifact_digest: str
    format: str
    metadata: dict[str, Any]
    tags: dict[str, str]
    aliases: list[str]
    created_by: ActorRecord
    create_time: dt.datetime
    update_time: dt.datetime
    archival: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"models/{self.name}/versions/{self.version}"
