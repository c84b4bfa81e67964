"""ONNX models on onnxruntime: the CUDA execution provider when the device is a GPU, else CPU.

An ONNX file is a protobuf graph plus tensors; onnxruntime parses it without running Python. The
signature the session reports (names, element types, dims; symbolic dims become -1) is the
model's declared signature.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from libs.errors.domain_errors import InvalidArgument
from services.gpu_runner.domain.devices import Device, DeviceType
from services.gpu_runner.domain.source import ONNX, ResolvedVersion
from services.gpu_runner.domain.tensors import DTYPES, Signature, TensorSpec
from services.gpu_runner.loaders.base import Arrays, Backend, UnsupportedArtifact

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(arg) -> TensorSpec:
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        raise UnsupportedArtifact(f"ONNX tensor {arg.name} has type {arg.type}, which the runner cannot serve")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


class OnnxBackend(Backend):
    def __init__(self, session, device: Device, weight_bytes: int, platform: str = "onnxruntime_onnx") -> None:
        super().__init__()
        self.session = session
        self.device = device
        self.platform = platform
        self.weight_bytes = weight_bytes
        self.declared_signature = Signature(
            inputs=tuple(_spec(a) for a in session.get_inputs()),
            outputs=tuple(_spec(a) for a in session.get_outputs()),
        )

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Arrays:
        sig = self.signature
        assert sig is not None, "bind() a signature before predict()"
        feed = {}
        for spec in sig.inputs:
            array = inputs[spec.name]
            if spec.datatype == "BYTES":  # onnxruntime wants str for tensor(string)
                array = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array)
            elif spec.datatype == "BF16":
                raise InvalidArgument("the ONNX backend cannot take BF16 tensors")
            feed[spec.name] = array
        names = [s.name for s in sig.outputs]
        results = self.session.run(names, feed)
        out: Arrays = {}
        for spec, array in zip(sig.outputs, results, strict=True):
            if spec.datatype == "BYTES":
                array = np.vectorize(lambda s: s.encode() if isinstance(s, str) else bytes(s), otypes=[object])(array)
            elif array.dtype != DTYPES[spec.datatype]:
                array = array.astype(DTYPES[spec.datatype])
            out[spec.name] = array
        return out

    def close(self) -> None:
        self.session = None


def _providers(device: Device) -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device.type is DeviceType.CUDA and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_onnx(
    path: Path, device: Device, *, weight_bytes: int, threads: int = 0, platform: str = "onnxruntime_onnx"
) -> OnnxBackend:
    """A session for the model file at `path`; `weight_bytes` is what it holds (file + external data)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=_providers(device))
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph/... types
        raise UnsupportedArtifact(f"onnxruntime refused the model: {str(err).splitlines()[0][:300]}") from None
    return OnnxBackend(session, device, weight_bytes, platform)


class OnnxLoader:
    formats = (ONNX,)

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads

    def load(self, path: Path, version: ResolvedVersion, device: Device) -> Backend:
        return load_onnx(path, device, weight_bytes=os.path.getsize(path), threads=self.threads)
