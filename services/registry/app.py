"""Wiring: config -> stores -> domain -> servicers. Used by main.py, the tests and the benchmarks."""

from __future__ import annotations

import dataclasses
import logging

import grpc
import sqlalchemy as sa

from causeway.audit.v1 import audit_service_pb2
from causeway.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from libs.artifacts.blob_store import BlobStore
from libs.artifacts.factory import open_blob_store
from libs.audit.audit_log import AuditLog
from libs.audit.store import SqlAuditStore
from libs.auth.interceptor import AuthInterceptor
from libs.auth.rbac import Authorizer
from libs.auth.settings import token_verifier
from libs.grpc_server.server import ServiceBinding
from services.registry.api import governance_servicer
from services.registry.api.governance_convert import environment_validations
from services.registry.api.permissions import METHOD_PERMISSIONS
from services.registry.api.registry_servicer import RegistryServicer
from services.registry.config import Config
from services.registry.domain.aliases import AliasManager
from services.registry.domain.artifacts import Artifacts
from services.registry.domain.auditing import Auditor
from services.registry.domain.catalog import ModelCatalog
from services.registry.domain.discovery import Discovery
from services.registry.domain.governance import Governance
from services.registry.domain.policies import load_policies
from services.registry.storage.db import create_engine
from services.registry.storage.governance_db import SqlGovernanceStore
from services.registry.storage.mlflow_registry import MlflowRegistry

log = logging.getLogger(__name__)


def service_name(descriptor_module, service: str) -> str:
    return descriptor_module.DESCRIPTOR.services_by_name[service].full_name


class BlobLayoutLookup:
    """Artifact layout from the blob store alone (every blob is a FILE) until an artifact index is wired."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def layout_of(self, digest: str) -> str | None:
        return "FILE" if self.blobs.stat(digest) is not None else None


@dataclasses.dataclass
class RegistryApp:
    config: Config
    engine: sa.Engine
    audit_log: AuditLog
    auditor: Auditor
    blobs: BlobStore
    mlflow: MlflowRegistry
    catalog: ModelCatalog
    aliases: AliasManager
    discovery: Discovery
    registry_servicer: RegistryServicer
    bindings: list[ServiceBinding]
    interceptors: list[grpc.ServerInterceptor]
    governance: Governance | None = None  # set by _wire_governance
    artifacts: Artifacts | None = None  # set by _wire_artifacts_and_audit

    def close(self) -> None:
        self.engine.dispose()


def _auth_interceptor(config: Config) -> AuthInterceptor:
    verifier = token_verifier(config.auth)
    return AuthInterceptor(verifier, Authorizer(METHOD_PERMISSIONS))


# ---- governance (GovernanceService: validation reports, approvals, policies, gates) ----------------
def _wire_governance(app: RegistryApp) -> None:
    """Governance on the registry engine; feeds gates to alias moves and validation status to the catalog."""
    settings = app.config.registry
    governance = Governance(
        SqlGovernanceStore(app.engine),
        app.catalog,
        app.auditor,
        load_policies(settings.policies_file),  # a bad file stops the start, naming file and line
        # An artifact exists once recorded (domain/artifacts.py), not merely because a blob does.
        artifact_exists=lambda digest: app.artifacts is not None and app.artifacts.layout_of(digest) is not None,
        signing_window_minutes=settings.signing_window_minutes,
        issuer=app.config.auth.issuer,
    )
    app.governance = governance
    app.aliases.gates = governance  # environment aliases only ever point at versions passing the gates
    app.discovery.validated_for = governance.versions_validated_for
    app.registry_servicer.validations = lambda name, version: environment_validations(
        governance.latest_validations(name, version)
    )
    app.bindings.append(governance_servicer.binding(governance))


# ---- end governance ---------------------------------------------------------------------------------


# ---- artifacts and audit (ArtifactService, AuditService) ------------------------------------------
def _wire_artifacts_and_audit(app: RegistryApp) -> None:
    """The artifact index, crash recovery at start, the catalog's view of artifacts; AuditService."""
    from services.registry.api import artifact_servicer, audit_servicer
    from services.registry.domain.audit_chain import AuditChain
    from services.registry.storage.artifact_db import SqlArtifactIndex
    from services.registry.storage.audit_query import SqlEventQueries

    artifacts = Artifacts(app.blobs, SqlArtifactIndex(app.engine), app.auditor, issuer=app.config.auth.issuer)
    # Before serving: abandoned staging files and blobs whose upload never recorded them go.
    artifacts.recover()
    app.artifacts = artifacts
    # Only recorded artifacts can back a version (an unrecorded blob is not an artifact).
    app.catalog.artifacts = artifacts

    def artifact_of(digest: str):
        record = artifacts.index.get(digest)
        return None if record is None else artifact_servicer.artifact_proto(record)

    # ModelVersion.artifact carries size, layout, filename and uploader, not only the digest.
    app.registry_servicer.artifact_proto = artifact_of
    app.bindings.append(artifact_servicer.binding(artifacts))
    # AuditService: a second handle on the same chain tables (appends serialize in the database).
    settings = app.config.registry
    chain = AuditChain(
        SqlAuditStore(engine=app.engine),
        SqlEventQueries(app.engine),
        app.auditor,
        key=settings.audit_key.reveal().encode() if settings.audit_key else None,
    )
    app.bindings.append(audit_servicer.binding(chain))


# ---- end artifacts and audit ----------------------------------------------------------------------


def build_app(config: Config) -> RegistryApp:
    settings = config.registry
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.db_store_url())
    audit_key = settings.audit_key.reveal().encode() if settings.audit_key else None
    audit_log = AuditLog(SqlAuditStore(engine=engine), key=audit_key)
    auditor = Auditor(audit_log)
    blobs = open_blob_store(settings.artifact_store_url(), max_size=settings.max_artifact_bytes)
    mlflow = MlflowRegistry(settings.mlflow_store_uri())
    catalog = ModelCatalog(mlflow, auditor, BlobLayoutLookup(blobs), issuer=config.auth.issuer)
    aliases = AliasManager(catalog, gates=None, deployer_subjects=frozenset(settings.deployer_subjects))
    discovery = Discovery(catalog)
    registry_servicer = RegistryServicer(catalog, aliases, discovery)
    bindings = [
        ServiceBinding(
            service_name(registry_service_pb2, "RegistryService"),
            lambda server: registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(registry_servicer, server),
        ),
    ]
    app = RegistryApp(
        config=config,
        engine=engine,
        audit_log=audit_log,
        auditor=auditor,
        blobs=blobs,
        mlflow=mlflow,
        catalog=catalog,
        aliases=aliases,
        discovery=discovery,
        registry_servicer=registry_servicer,
        bindings=bindings,
        interceptors=[_auth_interceptor(config)],
    )
    # ---- further services wire themselves here (artifacts, governance, audit) ----
    _wire_artifacts_and_audit(app)
    _wire_governance(app)
    _ = audit_service_pb2  # the audit servicer binds causeway.audit.v1.AuditService
    return app
