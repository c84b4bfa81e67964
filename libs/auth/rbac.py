"""Role-based access: roles grant permissions; each RPC requires one permission. Deny by default.

Each service declares its method → permission map next to its servicer; the role → permission map
is shared here so that "what may a reviewer do" has one answer across the platform.
"""

from __future__ import annotations

from collections.abc import Mapping

from libs.auth.principal import Principal, Role
from libs.errors.domain_errors import PermissionDenied

# Permissions, named <resource>.<verb>.
MODELS_READ = "models.read"
MODELS_WRITE = "models.write"
ARTIFACTS_READ = "artifacts.read"
ARTIFACTS_WRITE = "artifacts.write"
VALIDATIONS_READ = "validations.read"
VALIDATIONS_RUN = "validations.run"
VALIDATIONS_REPORT = "validations.report"
APPROVALS_READ = "approvals.read"
APPROVALS_SIGN = "approvals.sign"
DEPLOYMENTS_READ = "deployments.read"
DEPLOYMENTS_WRITE = "deployments.write"
RUNNER_INFER = "runner.infer"
RUNNER_MANAGE = "runner.manage"
JOBS_READ = "jobs.read"
JOBS_SUBMIT = "jobs.submit"
QUOTAS_MANAGE = "quotas.manage"
AUDIT_READ = "audit.read"
AUDIT_APPEND = "audit.append"
POLICIES_READ = "policies.read"

_EVERYONE = {MODELS_READ, ARTIFACTS_READ, VALIDATIONS_READ, APPROVALS_READ, DEPLOYMENTS_READ, POLICIES_READ, JOBS_READ}

ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    Role.RESEARCHER.value: frozenset(
        _EVERYONE | {MODELS_WRITE, ARTIFACTS_WRITE, VALIDATIONS_RUN, RUNNER_INFER, JOBS_SUBMIT}
    ),
    Role.REVIEWER.value: frozenset(_EVERYONE | {APPROVALS_SIGN, AUDIT_READ, RUNNER_INFER}),
    Role.QA_APPROVER.value: frozenset(_EVERYONE | {APPROVALS_SIGN, AUDIT_READ, VALIDATIONS_RUN}),
    Role.RELEASE_MANAGER.value: frozenset(_EVERYONE | {DEPLOYMENTS_WRITE, AUDIT_READ, RUNNER_MANAGE}),
    Role.PLATFORM_ADMIN.value: frozenset(
        _EVERYONE
        | {
            MODELS_WRITE,
            ARTIFACTS_WRITE,
            VALIDATIONS_RUN,
            DEPLOYMENTS_WRITE,
            RUNNER_INFER,
            RUNNER_MANAGE,
            JOBS_SUBMIT,
            QUOTAS_MANAGE,
            AUDIT_READ,
        }
    ),
    # Services call each other: the validator reports results, the deployer and runner read gates
    # and artifacts, everyone appends audit events. A service never signs approvals.
    Role.SERVICE.value: frozenset(
        _EVERYONE | {VALIDATIONS_REPORT, AUDIT_APPEND, RUNNER_MANAGE, RUNNER_INFER, ARTIFACTS_READ}
    ),
}


class Authorizer:
    """Checks a principal against the permission an RPC requires."""

    def __init__(
        self,
        method_permissions: Mapping[str, str],
        role_permissions: Mapping[str, frozenset[str]] = ROLE_PERMISSIONS,
    ) -> None:
        self._methods = dict(method_permissions)
        self._roles = role_permissions

    def permissions_of(self, principal: Principal) -> frozenset[str]:
        granted: set[str] = set()
        for role in principal.roles:
            granted |= self._roles.get(role, frozenset())
        return frozenset(granted)

    def require(self, principal: Principal, permission: str, action: str) -> None:
        """Raise PermissionDenied unless one of the principal's roles grants `permission`."""
        if permission not in self.permissions_of(principal):
            roles = ", ".join(sorted(principal.roles)) or "no roles"
            raise PermissionDenied(
                f"{principal.subject} ({roles}) lacks permission {permission!r} required to {action}"
            )

    def check_method(self, principal: Principal, method: str) -> None:
        permission = self._methods.get(method)
        if permission is None:
            raise PermissionDenied(f"{method} is not in this service's permission map; access is denied by default")
        self.require(principal, permission, "call " + method.rsplit("/", 1)[-1])
