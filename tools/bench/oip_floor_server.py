"""The transport floor for the runner benchmark: a bare OIP ModelInfer with no model behind it.

A plain grpc.server (same thread pool size as the runner) whose ModelInfer checks nothing, runs
nothing and answers zeros of the right shape (FP32 [rows, OUTPUTS], raw). No auth, interceptors,
metrics, logging, batching or model. Driven by the same tritonclient load generator, it measures
what Python gRPC and this client can move one row per request on this machine at all: the ceiling
for the runner's one-row figures, whatever the runner does inside.

  oip_floor_server.py PORT OUTPUTS MAX_WORKERS   (serves on 127.0.0.1:PORT until SIGTERM)
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc

from inference import grpc_service_pb2 as pb
from inference import grpc_service_pb2_grpc as pb_grpc


class FloorServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, outputs: int) -> None:
        self.outputs = outputs

    def ServerReady(self, request, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        rows = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
        response = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version or "1")
        response.outputs.add(name="output", datatype="FP32", shape=[rows, self.outputs])
        response.raw_output_contents.append(bytes(4 * rows * self.outputs))
        return response


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    port, outputs, workers = (int(a) for a in argv)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)])
    # The generated servicer answers UNIMPLEMENTED for the RPCs not overridden here; mypy-protobuf's
    # stub declares them abstract all the same.
    servicer = FloorServicer(outputs)  # type: ignore[abstract]
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        print(f"cannot bind 127.0.0.1:{port}", file=sys.stderr)
        return 1
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(0).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
