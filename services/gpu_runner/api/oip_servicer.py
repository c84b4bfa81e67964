"""inference.GRPCInferenceService: OIP requests -> ModelManager -> OIP responses, nothing else."""

from __future__ import annotations

import grpc

from inference import grpc_service_pb2 as pb
from inference import grpc_service_pb2_grpc as pb_grpc
from libs.errors.domain_errors import InvalidArgument
from libs.grpc_server.server import ServiceBinding
from services.gpu_runner.api import oip_codec
from services.gpu_runner.domain.models import ModelManager
from services.gpu_runner.domain.readiness import Readiness

SERVER_NAME = "causeway-gpu-runner"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# Inference is the hot path: its successful calls are access-logged at DEBUG (failures at INFO);
# the RED metrics still count every call. One JSON line per one-row request cost ~8 % of its CPU.
QUIET_METHODS = (f"/{SERVICE_NAME}/ModelInfer",)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: ModelManager, readiness: Readiness, version: str) -> None:
        self.models = models
        self.readiness = readiness
        self.version = version

    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.readiness.ready)

    def ServerMetadata(self, request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.version, extensions=[])

    def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        if not request.name:
            raise InvalidArgument("name is required")
        return pb.ModelReadyResponse(ready=self.models.model_ready(request.name, request.version))

    def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        if not request.name:
            raise InvalidArgument("name is required")
        view = self.models.view(request.name, request.version)
        signature = view.signature
        return pb.ModelMetadataResponse(
            name=view.name,
            versions=[str(v) for v in self.models.versions(view.name)],
            platform=view.platform,
            inputs=[oip_codec.tensor_metadata(s) for s in signature.inputs] if signature else [],
            outputs=[oip_codec.tensor_metadata(s) for s in signature.outputs] if signature else [],
        )

    def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        decoded = oip_codec.decode_request(request)
        view, outputs = self.models.infer(
            request.model_name, request.model_version, decoded.inputs, decoded.datatypes, decoded.requested_outputs
        )
        assert view.signature is not None  # a model that answered has its signature bound
        specs = view.signature.select_outputs(decoded.requested_outputs)
        return oip_codec.encode_response(request, view.name, view.version, specs, outputs, decoded.raw)


def binding(servicer: InferenceServicer) -> ServiceBinding:
    return ServiceBinding(
        SERVICE_NAME, lambda server: pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    )
