"""causeway.registry.v1.RegistryService: proto <-> domain, nothing else."""

from __future__ import annotations

from collections.abc import Callable

from causeway.registry.v1 import model_pb2 as rm
from causeway.registry.v1 import registry_service_pb2 as pb
from causeway.registry.v1 import registry_service_pb2_grpc as pb_grpc
from libs.auth.principal import current
from libs.errors.domain_errors import InvalidArgument, Unauthenticated
from services.registry.api import convert
from services.registry.api.governance_servicer import with_details
from services.registry.api.version_request import metadata_of
from services.registry.domain.aliases import AliasManager
from services.registry.domain.catalog import ModelCatalog
from services.registry.domain.discovery import Discovery, ModelQuery, VersionQuery
from services.registry.domain.records import ModelVersionRecord

_ENVIRONMENTS = {1: "dev", 2: "test", 3: "prod"}
_MODEL_ORDERS = {0: "name", 1: "name", 2: "update_time_desc"}
_VERSION_ORDERS = {0: "create_time_desc", 1: "create_time_desc", 2: "create_time_asc", 3: "model_name"}


def _principal():
    principal = current()
    if principal is None:
        raise Unauthenticated("no verified caller")
    return principal


def _alias(value: rm.ModelAlias.ValueType) -> str:
    if value not in convert.ALIAS_FROM_PROTO:
        raise InvalidArgument("alias is required (DEV, TEST, PROD or CHAMPION)")
    return convert.ALIAS_FROM_PROTO[value]


def _mask(update_mask, allowed: set[str]) -> set[str]:
    paths = set(update_mask.paths)
    if not paths:
        raise InvalidArgument(f"update_mask must name the fields to change ({', '.join(sorted(allowed))})")
    if not paths <= allowed:
        raise InvalidArgument(f"update_mask names fields that cannot be updated: {', '.join(sorted(paths - allowed))}")
    return paths


class RegistryServicer(pb_grpc.RegistryServiceServicer):
    def __init__(
        self,
        catalog: ModelCatalog,
        aliases: AliasManager,
        discovery: Discovery,
        artifact_proto: Callable[[str], object | None] = lambda digest: None,
        validations: Callable[[str, int], list] = lambda name, version: [],
    ) -> None:
        self.catalog = catalog
        self.aliases = aliases
        self.discovery = discovery
        self.artifact_proto = artifact_proto
        self.validations = validations

    def _version(self, record: ModelVersionRecord) -> rm.ModelVersion:
        return convert.model_version(
            record, self.artifact_proto(record.artifact_digest), self.validations(record.name, record.version)
        )

    def CreateRegisteredModel(self, request, context):
        record = self.catalog.create_model(
            _principal(), request.name, request.description, request.owner_team, dict(request.tags)
        )
        return pb.CreateRegisteredModelResponse(model=convert.registered_model(record))

    def GetRegisteredModel(self, request, context):
        return pb.GetRegisteredModelResponse(model=convert.registered_model(self.catalog.get_model(request.name)))

    def UpdateRegisteredModel(self, request, context):
        paths = _mask(request.update_mask, {"description", "owner_team"})
        record = self.catalog.update_model(
            _principal(),
            request.name,
            request.description if "description" in paths else None,
            request.owner_team if "owner_team" in paths else None,
        )
        return pb.UpdateRegisteredModelResponse(model=convert.registered_model(record))

    def SearchRegisteredModels(self, request, context):
        query = ModelQuery(
            text=request.query,
            tags=dict(request.tags),
            owner_team=request.owner_team,
            has_alias=convert.ALIAS_FROM_PROTO.get(request.has_alias, ""),
            order=_MODEL_ORDERS.get(request.order_by, "name"),
        )
        records, token = self.discovery.search_models(query, request.page_size, request.page_token)
        return pb.SearchRegisteredModelsResponse(
            models=[convert.registered_model(r) for r in records], next_page_token=token
        )

    def CreateModelVersion(self, request, context):
        fmt = convert.fmt_from_proto(request.format)
        if not fmt:
            raise InvalidArgument("format is required")
        record = self.catalog.create_version(
            _principal(),
            request.model_name,
            convert.digest_hex(request.artifact_digest, "artifact_digest"),
            fmt,
            metadata_of(request),
            dict(request.tags),
            request.description,
            request.request_id,
        )
        return pb.CreateModelVersionResponse(version=self._version(record))

    def GetModelVersion(self, request, context):
        record = self.catalog.get_version(request.model.name, request.model.version)
        return pb.GetModelVersionResponse(version=self._version(record))

    def GetModelVersionByAlias(self, request, context):
        record = self.aliases.version_by_alias(request.model_name, _alias(request.alias))
        return pb.GetModelVersionByAliasResponse(version=self._version(record))

    def UpdateModelVersion(self, request, context):
        _mask(request.update_mask, {"description"})
        record = self.catalog.update_version(
            _principal(), request.model.name, request.model.version, request.description
        )
        return pb.UpdateModelVersionResponse(version=self._version(record))

    def ArchiveModelVersion(self, request, context):
        record = self.catalog.archive_version(_principal(), request.model.name, request.model.version, request.reason)
        return pb.ArchiveModelVersionResponse(version=self._version(record))

    def SearchModelVersions(self, request, context):
        parent = f"{request.parent.name}/{request.parent.version}" if request.HasField("parent") else ""
        query = VersionQuery(
            model_name=request.model_name,
            tags=dict(request.tags),
            format=convert.fmt_from_proto(request.format),
            validated_for=_ENVIRONMENTS.get(request.validated_for, ""),
            artifact_digest=convert.digest_hex(request.artifact_digest, "artifact_digest", required=False),
            training_run_id=request.training_run_id,
            dataset_digest=convert.digest_hex(request.dataset_digest, "dataset_digest", required=False),
            code_commit_sha=request.code_commit_sha,
            parent=parent,
            created_by_subject=request.created_by_subject,
            create_time_start=convert.from_timestamp(request.create_time_start),
            create_time_end=convert.from_timestamp(request.create_time_end),
            state=convert.STATE_FROM_PROTO.get(request.state, ""),
            order=_VERSION_ORDERS.get(request.order_by, "create_time_desc"),
        )
        records, token = self.discovery.search_versions(query, request.page_size, request.page_token)
        return pb.SearchModelVersionsResponse(versions=[self._version(r) for r in records], next_page_token=token)

    def GetModelVersionLineage(self, request, context):
        root, ancestors, descendants = self.discovery.lineage(
            request.model.name, request.model.version, request.max_depth
        )

        def node(record: ModelVersionRecord, distance: int) -> rm.LineageNode:
            message = rm.LineageNode(distance=distance)
            message.model.name, message.model.version = record.name, record.version
            if "lineage" in record.metadata:
                convert.json_format.ParseDict(record.metadata["lineage"], message.lineage)
            return message

        response = pb.GetModelVersionLineageResponse(
            ancestors=[node(r, d) for r, d in ancestors], descendants=[node(r, d) for r, d in descendants]
        )
        if "lineage" in root.metadata:
            convert.json_format.ParseDict(root.metadata["lineage"], response.lineage)
        return response

    def _target(self, request) -> tuple[str, int | None]:
        which = request.WhichOneof("target")
        if which == "model_name":
            return request.model_name, None
        if which == "model_version":
            return request.model_version.name, request.model_version.version
        raise InvalidArgument("target is required: model_name or model_version")

    def SetTag(self, request, context):
        name, version = self._target(request)
        result = self.catalog.set_tag(_principal(), name, version, request.key, request.value)
        return pb.SetTagResponse(tags=result)

    def DeleteTag(self, request, context):
        name, version = self._target(request)
        return pb.DeleteTagResponse(tags=self.catalog.delete_tag(_principal(), name, version, request.key))

    @with_details  # a gate refusal carries a GateFailure detail
    def SetModelAlias(self, request, context):
        alias = _alias(request.alias)
        previous = self.aliases.set_alias(_principal(), request.model_name, alias, request.version, request.reason)
        model = self.catalog.get_model(request.model_name)
        assignment = next(a for a in model.aliases if a.alias == alias)
        registered = convert.registered_model(model)
        proto_assignment = next(a for a in registered.aliases if a.alias == convert.ALIAS_TO_PROTO[assignment.alias])
        return pb.SetModelAliasResponse(assignment=proto_assignment, previous_version=previous)

    def DeleteModelAlias(self, request, context):
        previous = self.aliases.delete_alias(_principal(), request.model_name, _alias(request.alias), request.reason)
        return pb.DeleteModelAliasResponse(previous_version=previous)
