"""What every format loader returns: a `Backend` that runs numpy arrays through a model.

Loaders never unpickle. Each one checks the bytes are what its format claims before handing them
to a library, and each reports the memory its weights hold so the budget can account for it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from libs.errors.domain_errors import FailedPrecondition, InvalidArgument
from services.gpu_runner.domain.devices import Device
from services.gpu_runner.domain.source import ResolvedVersion
from services.gpu_runner.domain.tensors import Signature

Arrays = dict[str, np.ndarray]


class Backend(abc.ABC):
    """A loaded model on one device. `bind` fixes the signature before the first `predict`."""

    platform: str = ""
    device: Device
    weight_bytes: int = 0
    declared_signature: Signature | None = None  # what the artifact itself says, if anything

    def __init__(self) -> None:
        self.signature: Signature | None = None

    def bind(self, signature: Signature) -> None:
        self.signature = signature

    @abc.abstractmethod
    def predict(self, inputs: Mapping[str, np.ndarray]) -> Arrays:
        """Outputs for inputs already checked against the bound signature."""

    def close(self) -> None:  # noqa: B027 - most backends free memory when dropped
        """Release device memory early (dropping the object does too)."""


class Loader(Protocol):
    @property
    def formats(self) -> tuple[str, ...]:
        """The registry format names this loader serves."""

    def load(self, path: Path, version: ResolvedVersion, device: Device) -> Backend:
        """A Backend for the verified artifact at `path` (a file, or a directory for TAR)."""


class UnsupportedArtifact(FailedPrecondition):
    """The bytes cannot be served by this loader (wrong format, needs unpickling, ...)."""


# ---- torch ---------------------------------------------------------------------------------------

_TORCH_DTYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "bfloat16",
}


def to_torch(array: np.ndarray, datatype: str, device: str):
    """A torch tensor for an OIP array (BF16 arrives as its uint16 bit pattern)."""
    import torch

    if datatype == "BYTES":
        raise InvalidArgument("torch models cannot take BYTES tensors")
    if not array.flags.writeable:
        # Requests decode zero-copy over read-only protobuf bytes; torch wants writable memory.
        array = array.copy()
    if datatype == "BF16":
        tensor = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(array)
    return tensor.to(device, non_blocking=True) if device != "cpu" else tensor


def from_torch(tensor, datatype: str) -> np.ndarray:
    """A numpy array in the OIP representation of `datatype` (cast when the model differs)."""
    import torch

    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if datatype == "BF16":
        if tensor.dtype != torch.bfloat16:
            tensor = tensor.to(torch.bfloat16)
        return tensor.view(torch.int16).numpy().view(np.uint16)
    target = getattr(torch, _TORCH_DTYPES[datatype])
    if tensor.dtype != target:
        tensor = tensor.to(target)
    return tensor.numpy()


def torch_datatype(dtype) -> str:
    """The OIP datatype of a torch dtype."""
    name = str(dtype).removeprefix("torch.")
    for oip, torch_name in _TORCH_DTYPES.items():
        if torch_name == name:
            return oip
    raise UnsupportedArtifact(f"torch dtype {dtype} has no Open Inference Protocol datatype")


class TorchModuleBackend(Backend):
    """A torch.nn.Module / ScriptModule called as module(*inputs in signature order)."""

    def __init__(self, module, device: Device, platform: str, declared: Signature | None = None) -> None:
        super().__init__()
        self.module = module
        self.device = device
        self.platform = platform
        self.declared_signature = declared
        self.weight_bytes = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Arrays:
        import torch

        sig = self.signature
        assert sig is not None, "bind() a signature before predict()"
        dev = self.device.torch_device
        with torch.inference_mode():
            args = [to_torch(inputs[spec.name], spec.datatype, dev) for spec in sig.inputs]
            result = self.module(*args)
        if isinstance(result, torch.Tensor):
            result = (result,)
        if isinstance(result, Mapping):
            missing = [s.name for s in sig.outputs if s.name not in result]
            if missing:
                raise FailedPrecondition(f"the model returned no output(s) {missing}; its outputs: {sorted(result)}")
            return {s.name: from_torch(result[s.name], s.datatype) for s in sig.outputs}
        if not isinstance(result, (tuple, list)) or len(result) != len(sig.outputs):
            count = len(result) if isinstance(result, (tuple, list)) else type(result).__name__
            raise FailedPrecondition(f"the model returned {count} outputs; its signature declares {len(sig.outputs)}")
        return {s.name: from_torch(t, s.datatype) for s, t in zip(sig.outputs, result, strict=True)}

    def close(self) -> None:
        self.module = None
        if self.device.torch_device != "cpu":
            import torch

            torch.cuda.empty_cache()
