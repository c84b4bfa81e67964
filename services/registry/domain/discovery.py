"""Finding models and versions: search with filters and AIP-158 paging, and lineage walks.

Filters that MLflow can evaluate (name, tag equality, our reserved searchable tags) go into its
filter string; the rest (free text over descriptions, alias presence, time ranges, validation
status) are applied to each fetched page. Page tokens wrap MLflow's token together with a
fingerprint of the query, so a token cannot be replayed against a different query.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable

from libs.errors.domain_errors import InvalidArgument
from services.registry.domain import naming, tags
from services.registry.domain.catalog import ModelCatalog
from services.registry.domain.records import ALIASES, FORMATS, ModelVersionRecord, RegisteredModelRecord
from services.registry.storage.mlflow_registry import quote

DEFAULT_PAGE, MAX_PAGE = 50, 1000
MAX_LINEAGE_DEPTH = 100


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    return DEFAULT_PAGE if requested == 0 else min(requested, MAX_PAGE)


def _fingerprint(query: dict) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(query: dict, inner: str | bytes | None) -> str:
    if not inner:
        return ""
    if isinstance(inner, bytes):  # MLflow's tokens are base64 bytes
        inner = inner.decode()
    raw = json.dumps({"q": _fingerprint(query), "t": inner}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(query: dict, token: str) -> str | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        fingerprint, inner = data["q"], data["t"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token is malformed: pass next_page_token unchanged") from None
    if fingerprint != _fingerprint(query):
        raise InvalidArgument("page_token belongs to a different query: keep every other field unchanged")
    return inner


@dataclasses.dataclass(frozen=True)
class ModelQuery:
    text: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    owner_team: str = ""
    has_alias: str = ""
    order: str = "name"  # "name" or "update_time_desc"


@dataclasses.dataclass(frozen=True)
class VersionQuery:
    model_name: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    format: str = ""
    validated_for: str = ""
    artifact_digest: str = ""
    training_run_id: str = ""
    dataset_digest: str = ""
    code_commit_sha: str = ""
    parent: str = ""  # "name/version"
    created_by_subject: str = ""
    create_time_start: dt.datetime | None = None
    create_time_end: dt.datetime | None = None
    state: str = ""
    order: str = "create_time_desc"  # or "create_time_asc", "model_name"


_MODEL_ORDERS = {"name": ["name ASC"], "update_time_desc": ["last_updated_timestamp DESC", "name ASC"]}
_VERSION_ORDERS = {
    "create_time_desc": ["creation_timestamp DESC", "name ASC", "version_number DESC"],
    "create_time_asc": ["creation_timestamp ASC", "name ASC", "version_number ASC"],
    "model_name": ["name ASC", "version_number ASC"],
}


def _tag_clause(key: str, value: str) -> str:
    return f"tags.`{key}` = '{quote(value)}'"


class Discovery:
    def __init__(
        self,
        catalog: ModelCatalog,
        validated_for: Callable[[str], set[tuple[str, int]]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.validated_for = validated_for

    def search_models(self, query: ModelQuery, size: int, token: str) -> tuple[list[RegisteredModelRecord], str]:
        size = page_size(size)
        if query.has_alias and query.has_alias not in ALIASES:
            raise InvalidArgument(f"has_alias must be one of {', '.join(ALIASES)}")
        for key, value in query.tags.items():
            naming.tag_key(key)
            naming.text(value, "tag value", naming.MAX_TAG_VALUE)
        naming.text(query.text, "query", 200)
        clauses = [_tag_clause(k, v) for k, v in sorted(query.tags.items())]
        if query.owner_team:
            clauses.append(_tag_clause(tags.OWNER_TEAM, naming.team_name(query.owner_team)))
        fingerprint = dataclasses.asdict(query) | {"size": size}
        entities, inner = self.catalog.mlflow.search_models(
            " and ".join(clauses), size, decode_token(fingerprint, token), _MODEL_ORDERS[query.order]
        )
        text = query.text.lower()
        results = []
        for entity in entities:
            if text and text not in entity.name.lower() and text not in (entity.description or "").lower():
                continue
            if query.has_alias and query.has_alias not in (entity.aliases or {}):
                continue
            results.append(self.catalog._model_record(entity))
        return results, encode_token(fingerprint, inner)

    def search_versions(self, query: VersionQuery, size: int, token: str) -> tuple[list[ModelVersionRecord], str]:
        size = page_size(size)
        clauses: list[str] = []
        if query.model_name:
            clauses.append(f"name = '{quote(naming.model_name(query.model_name, 'model_name'))}'")
        for key, value in sorted(query.tags.items()):
            naming.tag_key(key)
            clauses.append(_tag_clause(key, naming.text(value, "tag value", naming.MAX_TAG_VALUE)))
        if query.format:
            if query.format not in FORMATS:
                raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}")
            clauses.append(_tag_clause(tags.FORMAT, query.format))
        from libs.artifacts.blob_store import check_digest

        if query.artifact_digest:
            clauses.append(_tag_clause(tags.ARTIFACT, check_digest(query.artifact_digest)))
        if query.dataset_digest:
            clauses.append(_tag_clause(tags.DATASET_PREFIX + check_digest(query.dataset_digest), "1"))
        for key, value in (
            (tags.TRAINING_RUN, query.training_run_id),
            (tags.CODE_COMMIT, query.code_commit_sha),
            (tags.PARENT, query.parent),
            (tags.CREATED_BY_SUBJECT, query.created_by_subject),
            (tags.STATE, query.state),
        ):
            if value:
                clauses.append(_tag_clause(key, naming.text(value, key, 256)))
        passing = None
        if query.validated_for:
            if self.validated_for is None:
                raise InvalidArgument("validated_for is not available on this registry")
            passing = self.validated_for(query.validated_for)
        fingerprint = dataclasses.asdict(query) | {"size": size}
        entities, inner = self.catalog.mlflow.search_versions(
            " and ".join(clauses), size, decode_token(fingerprint, token), _VERSION_ORDERS[query.order]
        )
        aliases_by_model: dict[str, dict[str, int]] = {}
        results = []
        for entity in entities:
            if passing is not None and (entity.name, int(entity.version)) not in passing:
                continue
            if tags.ARTIFACT not in (entity.tags or {}):
                continue  # created in MLflow directly, not through Causeway: not a registry version
            if entity.name not in aliases_by_model:
                aliases_by_model[entity.name] = self.catalog._aliases_of(entity.name)
            record = self.catalog._version_record(entity, aliases_by_model[entity.name])
            if query.create_time_start and record.create_time < query.create_time_start:
                continue
            if query.create_time_end and record.create_time >= query.create_time_end:
                continue
            results.append(record)
        return results, encode_token(fingerprint, inner)

    def lineage(
        self, name: str, version: int, max_depth: int
    ) -> tuple[ModelVersionRecord, list[tuple[ModelVersionRecord, int]], list[tuple[ModelVersionRecord, int]]]:
        """The version, its ancestors (parent chain) and its descendants, each with a distance."""
        if max_depth < 0:
            raise InvalidArgument("max_depth must not be negative")
        depth = min(max_depth or 10, MAX_LINEAGE_DEPTH)
        root = self.catalog.get_version(name, version)
        ancestors, seen = [], {(name, version)}
        current = root
        for distance in range(1, depth + 1):
            parent = current.metadata.get("lineage", {}).get("parent")
            if not parent:
                break
            key = (parent["name"], int(parent["version"]))
            if key in seen:  # a cycle cannot be registered, but never loop on bad data
                break
            seen.add(key)
            current = self.catalog.get_version(*key)
            ancestors.append((current, distance))
        descendants = []
        frontier = [root]
        for distance in range(1, depth + 1):
            next_frontier = []
            for node in frontier:
                token = None
                while True:
                    children, token = self.catalog.mlflow.search_versions(
                        _tag_clause(tags.PARENT, f"{node.name}/{node.version}"), MAX_PAGE, token
                    )
                    for child in children:
                        record = self.catalog._version_record(child, self.catalog._aliases_of(child.name))
                        if (record.name, record.version) not in seen:
                            seen.add((record.name, record.version))
                            descendants.append((record, distance))
                            next_frontier.append(record)
                    if not token:
                        break
            frontier = next_frontier
            if not frontier:
                break
        return root, ancestors, descendants
