"""Which permission each validator RPC requires (libs/auth/rbac.py holds the role -> permission map).

Finer rules live in the domain: StartValidation also needs the caller to be in the model's owner
team (or qa-approver / platform-admin); CancelValidationRun needs the caller to have started the
run (or platform-admin).
"""

from libs.auth import rbac

_VALIDATOR = "/causeway.validator.v1.ValidatorService/"

METHOD_PERMISSIONS: dict[str, str] = {
    _VALIDATOR + "StartValidation": rbac.VALIDATIONS_RUN,
    _VALIDATOR + "GetValidationRun": rbac.VALIDATIONS_READ,
    _VALIDATOR + "WatchValidationRun": rbac.VALIDATIONS_READ,
    _VALIDATOR + "CancelValidationRun": rbac.VALIDATIONS_RUN,
    _VALIDATOR + "ListValidationRuns": rbac.VALIDATIONS_READ,
    _VALIDATOR + "GetValidationReport": rbac.VALIDATIONS_READ,
    _VALIDATOR + "ListPolicies": rbac.POLICIES_READ,
    _VALIDATOR + "GetPolicy": rbac.POLICIES_READ,
}
