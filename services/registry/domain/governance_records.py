"""Governance records: validation reports, approvals (e-signatures), revocations and gate results.

Plain data plus the few pure functions every governance module shares: digests, the signed-record
encodings and page tokens. Digests are lowercase SHA-256 hex without prefix everywhere inside the
registry; "sha256:<hex>" only appears in human-facing text and gate evidence.

The signed-record encodings are the proto3 JSON form (field names as in approval.proto, enums by
name, int64 as strings, unset fields omitted) of fields 1-10 of an `Approval` and 1-6 of a
`Revocation`, serialized as canonical JSON. So anyone holding an API response can recompute a
record digest with `json_format.MessageToDict(..., preserving_proto_field_name=True)` and a JCS
serializer, without access to the registry's code or database.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import re
import uuid
from typing import Any, Protocol

from libs.audit.events import canonical_json
from libs.errors.domain_errors import AlreadyExists, FailedPrecondition, InvalidArgument
from services.registry.domain.policies import EnvironmentPolicy
from services.registry.domain.records import ActorRecord, ModelVersionRecord

REVIEWED, APPROVED_FOR_RELEASE, REJECTED = "REVIEWED", "APPROVED_FOR_RELEASE", "REJECTED"
MEANINGS = (REVIEWED, APPROVED_FOR_RELEASE, REJECTED)
# How a meaning reads in the signature manifestation (21 CFR 11.50(a)(3)).
MEANING_TEXT = {REVIEWED: "reviewed", APPROVED_FOR_RELEASE: "approved for release", REJECTED: "rejected"}
PASSED, FAILED, ERROR = "PASSED", "FAILED", "ERROR"
VERDICTS = (PASSED, FAILED, ERROR)
ACTIVE, REVOKED = "ACTIVE", "REVOKED"

_HEX = re.compile(r"^[0-9a-f]{64}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
DEFAULT_PAGE, MAX_PAGE = 50, 1000


class CatalogLookup(Protocol):
    """What governance needs from the model catalog (services/registry/domain/catalog.py)."""

    def get_model(self, name: str) -> Any:
        """The registered model; raises NotFound if there is none."""

    def get_version(self, name: str, version: int) -> ModelVersionRecord:
        """The version; raises NotFound if there is none."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_hex(value: str, field: str, *, required: bool = True) -> str:
    """`value` if it is 64 lowercase hex characters ("" allowed unless required), else InvalidArgument."""
    if not value and not required:
        return ""
    if not isinstance(value, str) or not _HEX.match(value):
        raise InvalidArgument(f"{field} must be a SHA-256 digest: 64 lowercase hexadecimal characters")
    return value


def plain_hex(digest: str) -> str:
    """A digest as bare hex, whether it was stored as "<hex>" or "sha256:<hex>"."""
    return digest.removeprefix("sha256:")


def labelled(hex_digest: str) -> str:
    return f"sha256:{hex_digest}" if hex_digest else ""


def check_request_id(value: str, field: str = "request_id") -> str:
    """ "" or the canonical form of a UUID; idempotency keys must be unguessable and unambiguous."""
    if not value:
        return ""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(f"{field} must be a UUID such as {uuid.UUID(int=0)}") from None


def check_run_id(value: str) -> str:
    if not _RUN_ID.match(value or ""):
        raise InvalidArgument("run_id is required: 1-128 of letters, digits, '.', '_', ':', '-'")
    return value


def seconds(t: dt.datetime) -> dt.datetime:
    """`t` in UTC truncated to whole seconds: signatures carry the time their statement shows."""
    return t.astimezone(dt.UTC).replace(microsecond=0)


def rfc3339(t: dt.datetime) -> str:
    """Proto3 JSON form of a Timestamp (fractional digits only when needed, as protobuf writes them)."""
    t = t.astimezone(dt.UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        frac = f"{t.microsecond:06d}"
        frac = frac[:3] if frac.endswith("000") else frac
        base += "." + frac
    return base + "Z"


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """A recorded validation report; `report_json` is empty in list results."""

    model_name: str
    version: int
    artifact_digest: str
    policy_name: str
    policy_digest: str
    environment: str  # "" when the run was not started for an environment
    run_id: str
    verdict: str
    report_digest: str
    report_json: bytes
    recorded_by: ActorRecord
    record_time: dt.datetime
    audit_sequence: int = 0

    def same_record(self, other: ValidationReport) -> bool:
        """True if `other` records the same run with the same content (an idempotent retry)."""
        keys = (
            "model_name",
            "version",
            "artifact_digest",
            "policy_name",
            "policy_digest",
            "environment",
            "run_id",
            "verdict",
            "report_digest",
        )
        return all(getattr(self, k) == getattr(other, k) for k in keys)


@dataclasses.dataclass(frozen=True)
class ValidationStatus:
    """The latest report under one environment's validation policy (verdict "" if none yet)."""

    environment: str
    policy_name: str
    verdict: str
    report_digest: str
    run_id: str
    record_time: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Revocation:
    """A signed record withdrawing an approval (itself an electronic signature)."""

    revocation_id: str
    approval_id: str
    approval_record_digest: str
    reason: str
    revoker: ActorRecord
    revoke_time: dt.datetime
    record_digest: str = ""
    audit_sequence: int = 0
    request_id: str = ""

    def signed_fields(self) -> dict[str, Any]:
        return {
            "revocation_id": self.revocation_id,
            "approval_id": self.approval_id,
            "approval_record_digest": _digest_json(self.approval_record_digest),
            "reason": self.reason,
            "revoker": actor_json(self.revoker),
            "revoke_time": rfc3339(self.revoke_time),
        }

    def computed_digest(self) -> str:
        return sha256_hex(canonical_json(self.signed_fields()))


@dataclasses.dataclass(frozen=True)
class Approval:
    """An electronic signature on one version for one environment; state derives from `revocation`."""

    approval_id: str
    model_name: str
    version: int
    environment: str
    meaning: str
    statement: str
    reason: str
    signer: ActorRecord
    sign_time: dt.datetime
    artifact_digest: str
    report_digest: str  # "" only where the environment requires no validation
    record_digest: str = ""
    audit_sequence: int = 0
    request_id: str = ""
    revocation: Revocation | None = None

    @property
    def state(self) -> str:
        return REVOKED if self.revocation is not None else ACTIVE

    @property
    def active(self) -> bool:
        return self.revocation is None

    @property
    def subject(self) -> str:
        """The audit subject of this signature."""
        return f"models/{self.model_name}/versions/{self.version}/approvals/{self.approval_id}"

    def signed_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "approval_id": self.approval_id,
            "model": {"name": self.model_name, "version": str(self.version)},
            "environment": f"ENVIRONMENT_{self.environment.upper()}",
            "meaning": f"SIGNATURE_MEANING_{self.meaning}",
            "statement": self.statement,
            "reason": self.reason,
            "signer": actor_json(self.signer),
            "sign_time": rfc3339(self.sign_time),
            "artifact_digest": _digest_json(self.artifact_digest),
        }
        if self.report_digest:
            fields["validation_report_digest"] = _digest_json(self.report_digest)
        return fields

    def computed_digest(self) -> str:
        return sha256_hex(canonical_json(self.signed_fields()))


def statement(
    signer: ActorRecord, name: str, version: int, environment: str, when: dt.datetime, meaning: str, reason: str
) -> str:
    """The signature manifestation (21 CFR 11.50): printed name, identity, time, meaning, reason."""
    return (
        f"{signer.display_name or signer.subject} ({signer.subject}) signed model {name} version {version} "
        f"for {environment} on {rfc3339(seconds(when))} meaning {MEANING_TEXT[meaning]}: {reason}"
    )


def actor_json(actor: ActorRecord) -> dict[str, Any]:
    """Proto3 JSON of a causeway.common.v1.Actor as the API renders an ActorRecord."""
    out: dict[str, Any] = {"subject": actor.subject}
    if actor.issuer:
        out["issuer"] = actor.issuer
    if actor.display_name:
        out["display_name"] = actor.display_name
    if actor.roles:
        out["roles"] = list(actor.roles)
    out["kind"] = "ACTOR_KIND_SERVICE" if actor.kind == "service" else "ACTOR_KIND_HUMAN"
    return out


def _digest_json(hex_digest: str) -> dict[str, str]:
    return {"algorithm": "DIGEST_ALGORITHM_SHA256", "hex": hex_digest}


GATES = ("VERSION_ACTIVE", "ARTIFACT_PRESENT", "VALIDATION", "APPROVALS", "SEPARATION_OF_DUTIES", "PROMOTION_ORDER")
GATE_PASSED, GATE_FAILED, GATE_NOT_REQUIRED = "PASSED", "FAILED", "NOT_REQUIRED"


@dataclasses.dataclass(frozen=True)
class GateResult:
    gate: str  # one of GATES
    status: str  # GATE_PASSED, GATE_FAILED or GATE_NOT_REQUIRED
    message: str
    evidence: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GateCheck:
    """Every gate of an environment's policy evaluated for one version at `evaluate_time`."""

    model_name: str
    version: int
    environment: str
    policy: EnvironmentPolicy
    gates: tuple[GateResult, ...]
    artifact_digest: str
    report_digest: str
    approval_ids: tuple[str, ...]
    evaluate_time: dt.datetime

    @property
    def allowed(self) -> bool:
        return all(g.status != GATE_FAILED for g in self.gates)

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if g.status == GATE_FAILED)

    @property
    def message(self) -> str:
        """One line naming what is missing ("" when allowed)."""
        return "; ".join(f"{g.gate}: {g.message}" for g in self.failed)


class Conflict(AlreadyExists):
    """A store insert hit a unique key (run id, digest, request id, an approval already revoked)."""


class ReportDigestMismatch(InvalidArgument):
    """report_json does not hash to the declared report_digest (INVALID_ARGUMENT + DigestMismatch)."""

    def __init__(self, declared: str, actual: str, size: int) -> None:
        super().__init__(
            f"report_json hashes to sha256:{actual}, not the declared report_digest sha256:{declared}: "
            "send the exact bytes that were hashed"
        )
        self.declared, self.actual, self.size = declared, actual, size


class GatesBlocked(FailedPrecondition):
    """An action needs a version to pass an environment's gates and it does not (+ GateFailure)."""

    def __init__(self, check: GateCheck) -> None:
        super().__init__(
            f"model {check.model_name} version {check.version} does not pass the {check.environment} gates: "
            f"{check.message}"
        )
        self.check = check
        self.evaluation = check  # the name services/registry/domain/aliases.py reads


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    return DEFAULT_PAGE if requested == 0 else min(requested, MAX_PAGE)


def _fingerprint(query: dict[str, Any]) -> str:
    return sha256_hex(canonical_json(query))[:16]


def encode_token(query: dict[str, Any], position: int) -> str:
    """An opaque page token bound to `query`, so it cannot be replayed against another query."""
    raw = json.dumps({"q": _fingerprint(query), "p": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(query: dict[str, Any], token: str) -> int | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        fingerprint, position = data["q"], int(data["p"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token is malformed: pass next_page_token unchanged") from None
    if fingerprint != _fingerprint(query):
        raise InvalidArgument("page_token belongs to a different query: keep every other field unchanged")
    return position
