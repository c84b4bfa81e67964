"""Which permission each DeployerService RPC requires (roles -> permissions: libs/auth/rbac.py)."""

from libs.auth import rbac

_DEPLOYER = "/causeway.deployer.v1.DeployerService/"

METHOD_PERMISSIONS: dict[str, str] = {
    # Changing what runs: role release-manager (or platform-admin).
    _DEPLOYER + "DeployModel": rbac.DEPLOYMENTS_WRITE,
    _DEPLOYER + "PromoteModel": rbac.DEPLOYMENTS_WRITE,
    _DEPLOYER + "RollbackModel": rbac.DEPLOYMENTS_WRITE,
    _DEPLOYER + "AbortDeployment": rbac.DEPLOYMENTS_WRITE,
    # Reading: every authenticated role.
    _DEPLOYER + "GetDeployment": rbac.DEPLOYMENTS_READ,
    _DEPLOYER + "GetDeploymentStatus": rbac.DEPLOYMENTS_READ,
    _DEPLOYER + "ListDeployments": rbac.DEPLOYMENTS_READ,
    _DEPLOYER + "ListDeploymentHistory": rbac.DEPLOYMENTS_READ,
}
