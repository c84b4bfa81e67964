"""Which permission each registry RPC requires (libs/auth/rbac.py holds the role → permission map)."""

from libs.auth import rbac

_REGISTRY = "/causeway.registry.v1.RegistryService/"
_ARTIFACTS = "/causeway.registry.v1.ArtifactService/"
_GOVERNANCE = "/causeway.registry.v1.GovernanceService/"
_AUDIT = "/causeway.audit.v1.AuditService/"

METHOD_PERMISSIONS: dict[str, str] = {
    _REGISTRY + "CreateRegisteredModel": rbac.MODELS_WRITE,
    _REGISTRY + "GetRegisteredModel": rbac.MODELS_READ,
    _REGISTRY + "UpdateRegisteredModel": rbac.MODELS_WRITE,
    _REGISTRY + "SearchRegisteredModels": rbac.MODELS_READ,
    _REGISTRY + "CreateModelVersion": rbac.MODELS_WRITE,
    _REGISTRY + "GetModelVersion": rbac.MODELS_READ,
    _REGISTRY + "GetModelVersionByAlias": rbac.MODELS_READ,
    _REGISTRY + "UpdateModelVersion": rbac.MODELS_WRITE,
    _REGISTRY + "ArchiveModelVersion": rbac.MODELS_WRITE,
    _REGISTRY + "SearchModelVersions": rbac.MODELS_READ,
    _REGISTRY + "GetModelVersionLineage": rbac.MODELS_READ,
    _REGISTRY + "SetTag": rbac.MODELS_WRITE,
    _REGISTRY + "DeleteTag": rbac.MODELS_WRITE,
    # Alias rules are finer than one permission (environment aliases: deployer service only;
    # champion: release managers); the domain checks them, this is the floor.
    _REGISTRY + "SetModelAlias": rbac.MODELS_READ,
    _REGISTRY + "DeleteModelAlias": rbac.MODELS_READ,
    _ARTIFACTS + "UploadArtifact": rbac.ARTIFACTS_WRITE,
    _ARTIFACTS + "DownloadArtifact": rbac.ARTIFACTS_READ,
    _ARTIFACTS + "GetArtifact": rbac.ARTIFACTS_READ,
    _GOVERNANCE + "RecordValidationReport": rbac.VALIDATIONS_REPORT,
    _GOVERNANCE + "GetValidationReport": rbac.VALIDATIONS_READ,
    _GOVERNANCE + "ListValidationReports": rbac.VALIDATIONS_READ,
    _GOVERNANCE + "CreateApproval": rbac.APPROVALS_SIGN,
    _GOVERNANCE + "RevokeApproval": rbac.APPROVALS_SIGN,
    _GOVERNANCE + "GetApproval": rbac.APPROVALS_READ,
    _GOVERNANCE + "ListApprovals": rbac.APPROVALS_READ,
    _GOVERNANCE + "GetEnvironmentPolicy": rbac.POLICIES_READ,
    _GOVERNANCE + "ListEnvironmentPolicies": rbac.POLICIES_READ,
    _GOVERNANCE + "CheckGates": rbac.MODELS_READ,
    _AUDIT + "AppendEvent": rbac.AUDIT_APPEND,
    _AUDIT + "GetEvent": rbac.AUDIT_READ,
    _AUDIT + "ListEvents": rbac.AUDIT_READ,
    _AUDIT + "GetChainHead": rbac.AUDIT_READ,
    _AUDIT + "VerifyChain": rbac.AUDIT_READ,
    _AUDIT + "ExportEvents": rbac.AUDIT_READ,
}
