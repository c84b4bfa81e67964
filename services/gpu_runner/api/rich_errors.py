"""Domain errors that carry a detail message leave as google.rpc.Status with that detail packed.

GatesBlocked -> FAILED_PRECONDITION + causeway.common.v1.GateFailure (one GateResult per failing
gate), DigestMismatchError -> FAILED_PRECONDITION + DigestMismatch, MemoryExhausted and
QuotaExceeded -> RESOURCE_EXHAUSTED + QuotaFailure. Everything else goes to the bootstrap's
mapping (libs/grpc_server), which sets the code and message only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import grpc

from causeway.common.v1 import errors_pb2, gate_pb2, model_pb2
from libs.errors.domain_errors import DomainError
from libs.grpc_server.rich_status import rich_status
from services.gpu_runner.api.convert import digest, environment
from services.gpu_runner.domain.jobs import QuotaExceeded
from services.gpu_runner.domain.memory import MemoryExhausted
from services.gpu_runner.domain.source import DigestMismatchError, GatesBlocked


def _detail(err: DomainError):
    if isinstance(err, GatesBlocked):
        return errors_pb2.GateFailure(
            model=model_pb2.ModelRef(name=err.name, version=err.version),
            environment=environment(err.environment),
            failed_gates=[
                gate_pb2.GateResult(
                    gate=gate_pb2.Gate.Value(f"GATE_{g.gate}")
                    if f"GATE_{g.gate}" in gate_pb2.Gate.keys()  # noqa: SIM118 - an EnumTypeWrapper, not a dict
                    else gate_pb2.GATE_UNSPECIFIED,
                    status=gate_pb2.GATE_STATUS_FAILED,
                    message=g.message,
                )
                for g in err.failed
            ],
        )
    if isinstance(err, DigestMismatchError):
        return errors_pb2.DigestMismatch(
            declared=digest(err.declared),
            actual=digest(err.actual),
            declared_size_bytes=err.declared_size,
            actual_size_bytes=err.actual_size,
        )
    if isinstance(err, MemoryExhausted):
        return errors_pb2.QuotaFailure(
            team="", limit="device_memory_bytes", limit_value=err.budget, current_value=err.budget - err.free
        )
    if isinstance(err, QuotaExceeded):
        return errors_pb2.QuotaFailure(
            team=err.team, limit=err.limit, limit_value=err.limit_value, current_value=err.current_value
        )
    return None


def abort_with_detail(context: grpc.ServicerContext, err: DomainError) -> None:
    detail = _detail(err)
    if detail is None:
        raise err
    context.abort_with_status(rich_status(getattr(grpc.StatusCode, err.status), err.message, detail))


def with_details(method: Callable) -> Callable:
    """Decorate a servicer method so errors with details leave as rich statuses."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except (GatesBlocked, DigestMismatchError, MemoryExhausted, QuotaExceeded) as err:
            abort_with_detail(context, err)

    return wrapper
