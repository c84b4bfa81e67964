"""gRPC errors of the services we call, as domain errors (the domain never sees grpc)."""

from __future__ import annotations

import grpc

from libs.errors.domain_errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)

_MAP: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    # The deployer's own identity was refused: an operator problem, not the caller's.
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def translate(err: grpc.RpcError, service: str) -> DomainError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    cls = _MAP.get(code, Unavailable)
    return cls(f"{service}: {err.details() if hasattr(err, 'details') else err}")
