"""Our inference/grpc_service.proto is wire-compatible with the Open Inference Protocol as
tritonclient implements it.

1. Descriptors: every service method and every message of our file exists in tritonclient's
   bundled grpc service file with the same name, number, type, label, type name and oneof, and
   no message of ours has more or fewer fields than the canonical one.
2. Behaviour: a real tritonclient.grpc client (in a subprocess) talks to a small server built
   from our generated stubs: health, metadata, and ModelInfer with raw FP32 and BYTES tensors.

tritonclient bundles its own `inference` package; it cannot share the default descriptor pool
with ours, so tritonclient always runs in a subprocess here.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2

from inference import grpc_service_pb2 as pb
from inference import grpc_service_pb2_grpc as pb_grpc

PROBE = Path(__file__).with_name("triton_client_probe.py")

# The canonical OIP: six RPCs and their messages, plus the shared tensor/parameter messages.
CANONICAL_RPCS = ["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]
CANONICAL_MESSAGES = [f"{rpc}{kind}" for rpc in CANONICAL_RPCS for kind in ("Request", "Response")]
CANONICAL_MESSAGES += [
    "InferParameter",
    "InferTensorContents",
    "ModelMetadataResponse.TensorMetadata",
    "ModelInferRequest.InferInputTensor",
    "ModelInferRequest.InferRequestedOutputTensor",
    "ModelInferResponse.InferOutputTensor",
]


def _probe(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # keep our stubs out
    res = subprocess.run(
        [sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _flatten(messages, prefix: str = "") -> dict[str, descriptor_pb2.DescriptorProto]:
    out = {}
    for msg in messages:
        name = prefix + msg.name
        out[name] = msg
        out.update(_flatten(msg.nested_type, name + "."))
    return out


def _fields(msg: descriptor_pb2.DescriptorProto) -> dict[str, tuple]:
    return {
        f.name: (
            f.number,
            f.type,
            f.label,
            f.type_name,
            msg.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None,
        )
        for f in msg.field
    }


@pytest.fixture(scope="module")
def canonical() -> descriptor_pb2.FileDescriptorProto:
    info = _probe("descriptor")
    fdp = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(info["file"]))
    assert fdp.package == "inference", info["module"]
    return fdp


@pytest.fixture(scope="module")
def ours() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(fdp)
    return fdp


class _PathRecorder:
    """A stand-in channel that records the method paths a generated stub registers."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def unary_unary(self, path: str, *args: object, **kwargs: object) -> None:
        self.paths.append(path)

    unary_stream = stream_unary = stream_stream = unary_unary


def test_package_service_and_method_paths(ours: descriptor_pb2.FileDescriptorProto) -> None:
    assert ours.package == "inference"
    assert [s.name for s in ours.service] == ["GRPCInferenceService"]
    assert [m.name for m in ours.service[0].method] == CANONICAL_RPCS
    # The HTTP/2 paths tritonclient and KServe clients call.
    recorder = _PathRecorder()
    pb_grpc.GRPCInferenceServiceStub(recorder)
    assert recorder.paths == [f"/inference.GRPCInferenceService/{rpc}" for rpc in CANONICAL_RPCS]


def test_methods_match_canonical(
    ours: descriptor_pb2.FileDescriptorProto, canonical: descriptor_pb2.FileDescriptorProto
) -> None:
    theirs = {m.name: m for s in canonical.service if s.name == "GRPCInferenceService" for m in s.method}
    for method in ours.service[0].method:
        other = theirs[method.name]
        assert (method.input_type, method.output_type) == (other.input_type, other.output_type), method.name
        assert (method.client_streaming, method.server_streaming) == (
            other.client_streaming,
            other.server_streaming,
        ), method.name


def test_messages_match_canonical(
    ours: descriptor_pb2.FileDescriptorProto, canonical: descriptor_pb2.FileDescriptorProto
) -> None:
    mine = _flatten(ours.message_type)
    theirs = _flatten(canonical.message_type)
    for name in CANONICAL_MESSAGES:
        assert name in mine, f"canonical message {name} missing from our file"
    for name, msg in mine.items():
        assert name in theirs, f"{name} is not in the canonical protocol"
        assert _fields(msg) == _fields(theirs[name]), name
        assert msg.options.map_entry == theirs[name].options.map_entry, name


def test_raw_contents_field_numbers() -> None:
    # The two numbers every OIP implementation gets wrong at least once.
    assert pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number == 7
    assert pb.ModelInferResponse.DESCRIPTOR.fields_by_name["raw_output_contents"].number == 6


def _bytes_tensor(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


class _Doubler(pb_grpc.GRPCInferenceServiceServicer):
    """A one-model server: OUTPUT0 = 2 * INPUT0 (FP32), TEXT_OUT = upper(TEXT) (BYTES)."""

    def __init__(self) -> None:
        self.requests: list[pb.ModelInferRequest] = []

    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=request.name == "doubler")

    def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="causeway-gpu-runner", version="test", extensions=[])

    def ModelMetadata(self, request, context):
        if request.name != "doubler":
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.name!r} is not loaded")
        tm = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name="doubler",
            versions=["1"],
            platform="pytorch_torchscript",
            inputs=[tm(name="INPUT0", datatype="FP32", shape=[-1, 4]), tm(name="TEXT", datatype="BYTES", shape=[-1])],
            outputs=[
                tm(name="OUTPUT0", datatype="FP32", shape=[-1, 4]),
                tm(name="TEXT_OUT", datatype="BYTES", shape=[-1]),
            ],
        )

    def ModelInfer(self, request, context):
        self.requests.append(request)
        if request.model_name != "doubler":
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model_name!r} is not loaded")
        if len(request.raw_input_contents) != len(request.inputs):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected raw_input_contents for every input")
        raw = dict(zip((i.name for i in request.inputs), request.raw_input_contents, strict=True))
        shapes = {i.name: list(i.shape) for i in request.inputs}
        x = np.frombuffer(raw["INPUT0"], dtype="<f4").reshape(shapes["INPUT0"])
        text = [t.upper() for t in _bytes_tensor(raw["TEXT"])]
        out = pb.ModelInferResponse.InferOutputTensor
        return pb.ModelInferResponse(
            model_name="doubler",
            model_version="1",
            id=request.id,
            outputs=[
                out(name="OUTPUT0", datatype="FP32", shape=shapes["INPUT0"]),
                out(name="TEXT_OUT", datatype="BYTES", shape=[len(text)]),
            ],
            raw_output_contents=[
                (2 * x).astype("<f4").tobytes(),
                b"".join(struct.pack("<I", len(t)) + t for t in text),
            ],
        )


def test_tritonclient_talks_to_a_server_built_from_our_stubs() -> None:
    servicer = _Doubler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        out = _probe("client", f"127.0.0.1:{port}")
    finally:
        server.stop(grace=None)

    assert out["live"] is True and out["ready"] is True and out["model_ready"] is True
    assert out["server_metadata"]["name"] == "causeway-gpu-runner"
    assert [t["name"] for t in out["model_metadata"]["inputs"]] == ["INPUT0", "TEXT"]
    assert out["model_metadata"]["inputs"][0]["shape"] == ["-1", "4"]
    assert out["output0"] == (2 * np.arange(8, dtype=np.float32).reshape(2, 4)).tolist()
    assert out["text_out"] == ["HELLO", "CAUSEWAY"]
    assert out["response_id"] == "req-1"
    assert out["response_model"] == ["doubler", "1"]
    assert out["missing_model_status"] == "StatusCode.NOT_FOUND"
    # tritonclient sent raw little-endian bytes (field 7), not typed contents.
    first = servicer.requests[0]
    assert len(first.raw_input_contents) == 2
    assert not any(i.HasField("contents") for i in first.inputs)
