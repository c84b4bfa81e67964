"""Proto <-> domain conversions shared by the registry's servicers."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from causeway.common.v1 import digest_pb2, identity_pb2, model_pb2
from causeway.registry.v1 import model_pb2 as registry_model_pb2
from libs.errors.domain_errors import InvalidArgument
from services.registry.domain.records import ActorRecord, ModelVersionRecord, RegisteredModelRecord

_HEX = re.compile(r"^[0-9a-f]{64}$")

ALIAS_TO_PROTO = {
    "dev": registry_model_pb2.MODEL_ALIAS_DEV,
    "test": registry_model_pb2.MODEL_ALIAS_TEST,
    "prod": registry_model_pb2.MODEL_ALIAS_PROD,
    "champion": registry_model_pb2.MODEL_ALIAS_CHAMPION,
}
ALIAS_FROM_PROTO = {v: k for k, v in ALIAS_TO_PROTO.items()}
STATE_TO_PROTO = {
    "READY": registry_model_pb2.MODEL_VERSION_STATE_READY,
    "ARCHIVED": registry_model_pb2.MODEL_VERSION_STATE_ARCHIVED,
}
STATE_FROM_PROTO = {v: k for k, v in STATE_TO_PROTO.items()}


def fmt_to_proto(name: str) -> model_pb2.ModelFormat.ValueType:
    return model_pb2.ModelFormat.Value(f"MODEL_FORMAT_{name}") if name else model_pb2.MODEL_FORMAT_UNSPECIFIED


def fmt_from_proto(value: model_pb2.ModelFormat.ValueType) -> str:
    if value == model_pb2.MODEL_FORMAT_UNSPECIFIED:
        return ""
    return model_pb2.ModelFormat.Name(value).removeprefix("MODEL_FORMAT_")


def digest_hex(digest: digest_pb2.Digest, field: str, *, required: bool = True) -> str:
    """The lowercase hex of a Digest message, or INVALID_ARGUMENT saying what is wrong."""
    if not digest.hex and digest.algorithm == digest_pb2.DIGEST_ALGORITHM_UNSPECIFIED:
        if required:
            raise InvalidArgument(f"{field} is required")
        return ""
    if digest.algorithm != digest_pb2.DIGEST_ALGORITHM_SHA256:
        raise InvalidArgument(f"{field}.algorithm must be DIGEST_ALGORITHM_SHA256")
    if not _HEX.match(digest.hex):
        raise InvalidArgument(f"{field}.hex must be 64 lowercase hexadecimal characters")
    return digest.hex


def digest_proto(hex_digest: str) -> digest_pb2.Digest:
    if not hex_digest:
        return digest_pb2.Digest()
    return digest_pb2.Digest(algorithm=digest_pb2.DIGEST_ALGORITHM_SHA256, hex=hex_digest)


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if value is not None:
        ts.FromDatetime(value.astimezone(dt.UTC).replace(tzinfo=None))
    return ts


def from_timestamp(ts: timestamp_pb2.Timestamp) -> dt.datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(dt.UTC)


def actor(record: ActorRecord | None) -> identity_pb2.Actor:
    if record is None or not record.subject:
        return identity_pb2.Actor()
    return identity_pb2.Actor(
        subject=record.subject,
        issuer=record.issuer,
        display_name=record.display_name,
        roles=list(record.roles),
        kind=identity_pb2.ACTOR_KIND_SERVICE if record.kind == "service" else identity_pb2.ACTOR_KIND_HUMAN,
    )


def to_dict(message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def registered_model(record: RegisteredModelRecord) -> registry_model_pb2.RegisteredModel:
    return registry_model_pb2.RegisteredModel(
        name=record.name,
        description=record.description,
        owner_team=record.owner_team,
        tags=record.tags,
        latest_version=record.latest_version,
        aliases=[
            registry_model_pb2.AliasAssignment(
                alias=ALIAS_TO_PROTO[a.alias],
                version=a.version,
                assigned_by=actor(a.assigned_by),
                assign_time=timestamp(a.assign_time),
            )
            for a in record.aliases
            if a.alias in ALIAS_TO_PROTO
        ],
        created_by=actor(record.created_by),
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )


def model_version(record: ModelVersionRecord, artifact=None, validations=()) -> registry_model_pb2.ModelVersion:
    """`artifact` is a registry_v1 Artifact proto if known; `validations` EnvironmentValidation protos."""
    meta = record.metadata
    message = registry_model_pb2.ModelVersion(
        ref=model_pb2.ModelRef(name=record.name, version=record.version),
        state=STATE_TO_PROTO.get(record.state, registry_model_pb2.MODEL_VERSION_STATE_UNSPECIFIED),
        description=record.description,
        format=fmt_to_proto(record.format),
        training_metrics=meta.get("training_metrics", {}),
        tags=record.tags,
        aliases=[ALIAS_TO_PROTO[a] for a in record.aliases if a in ALIAS_TO_PROTO],
        created_by=actor(record.created_by),
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        validations=list(validations),
    )
    if artifact is not None:
        message.artifact.CopyFrom(artifact)
    else:
        message.artifact.digest.CopyFrom(digest_proto(record.artifact_digest))
    for field in ("signature", "lineage", "training_baseline", "golden_dataset"):
        if field in meta:
            json_format.ParseDict(meta[field], getattr(message, field))
    if record.archival:
        arch = record.archival
        message.archival.archived_by.CopyFrom(actor(ActorRecord.from_dict(arch.get("archived_by", {}))))
        message.archival.archive_time.CopyFrom(timestamp(dt.datetime.fromisoformat(arch["archive_time"])))
        message.archival.reason = arch.get("reason", "")
    return message
