"""causeway.audit.v1.AuditService: proto <-> domain mapping and status codes, nothing else."""

from __future__ import annotations

import grpc

from causeway.audit.v1 import audit_event_pb2, audit_service_pb2, audit_service_pb2_grpc
from libs.auth import principal as principal_ctx
from libs.auth.principal import Principal
from libs.errors.domain_errors import Unauthenticated
from libs.grpc_server.server import ServiceBinding
from libs.telemetry import context as reqctx
from services.registry.api import audit_convert as conv
from services.registry.api.convert import digest_proto
from services.registry.domain.audit_chain import AuditChain


def _caller() -> Principal:
    principal = principal_ctx.current()
    if principal is None:  # only if the server was assembled without the auth interceptor
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>' metadata")
    return principal


class AuditServicer(audit_service_pb2_grpc.AuditServiceServicer):
    def __init__(self, chain: AuditChain) -> None:
        self.chain = chain

    def AppendEvent(self, request: audit_service_pb2.AppendEventRequest, context: grpc.ServicerContext):
        ctx = reqctx.current()
        # The event defaults to the trace of this call, which the emitting service propagated.
        stored, _ = self.chain.append(_caller(), conv.append_draft(request), ctx.trace_id if ctx else "")
        return audit_service_pb2.AppendEventResponse(event=conv.event(stored))

    def GetEvent(self, request: audit_service_pb2.GetEventRequest, context: grpc.ServicerContext):
        return audit_service_pb2.GetEventResponse(event=conv.event(self.chain.get(request.sequence)))

    def ListEvents(self, request: audit_service_pb2.ListEventsRequest, context: grpc.ServicerContext):
        events, token = self.chain.list(conv.query(request.filter), request.page_size, request.page_token)
        return audit_service_pb2.ListEventsResponse(events=[conv.event(e) for e in events], next_page_token=token)

    def GetChainHead(self, request: audit_service_pb2.GetChainHeadRequest, context: grpc.ServicerContext):
        return audit_service_pb2.GetChainHeadResponse(head=conv.head(self.chain.head()))

    def VerifyChain(self, request: audit_service_pb2.VerifyChainRequest, context: grpc.ServicerContext):
        result = self.chain.verify(_caller(), request.from_sequence, request.to_sequence, conv.anchor(request))
        response = audit_service_pb2.VerifyChainResponse(
            verdict=audit_event_pb2.CHAIN_VERDICT_BROKEN
            if result.first_break
            else audit_event_pb2.CHAIN_VERDICT_INTACT,
            events_verified=result.checked,
            head=conv.head(result.head),
        )
        if result.first_break:
            response.first_break.CopyFrom(conv.chain_break(result.first_break))
        return response

    def ExportEvents(self, request: audit_service_pb2.ExportEventsRequest, context: grpc.ServicerContext):
        export = self.chain.export(conv.query(request.filter), conv.json_line)
        for line in export.lines:
            yield audit_service_pb2.ExportEventsResponse(json_line=line)
        summary = audit_event_pb2.ExportSummary(
            event_count=export.count,
            first_sequence=export.first_seq,
            last_sequence=export.last_seq,
            export_digest=digest_proto(export.sha.hexdigest()),
            head=conv.head(export.head),
        )
        yield audit_service_pb2.ExportEventsResponse(summary=summary)


def binding(chain: AuditChain) -> ServiceBinding:
    servicer = AuditServicer(chain)
    return ServiceBinding(
        audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
        lambda server: audit_service_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server),
    )
