"""Errors that domain code raises. They carry a status name, never a gRPC type.

The gRPC server bootstrap (libs/grpc_server) maps each to its status code, so domain code stays
free of gRPC and a servicer never builds status codes by hand. Messages are shown to callers: say
what was wrong and what to do, and never include secrets.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class: `status` names the gRPC status code (e.g. "NOT_FOUND")."""

    status = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request is malformed; retrying it unchanged will fail again."""

    status = "INVALID_ARGUMENT"


class NotFound(DomainError):
    status = "NOT_FOUND"


class AlreadyExists(DomainError):
    status = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The system is not in a state that allows this (e.g. a gate is not met)."""

    status = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """A concurrency conflict; the caller may retry the whole operation."""

    status = "ABORTED"


class PermissionDenied(DomainError):
    status = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    status = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    status = "RESOURCE_EXHAUSTED"


class Unavailable(DomainError):
    """A dependency is down; the caller may retry with backoff."""

    status = "UNAVAILABLE"


class DeadlineExceeded(DomainError):
    status = "DEADLINE_EXCEEDED"


class Cancelled(DomainError):
    status = "CANCELLED"


class DataLoss(DomainError):
    """Stored data failed verification (e.g. an artifact whose bytes no longer match its digest)."""

    status = "DATA_LOSS"
