"""Test models in every format the runner serves, and an in-memory ModelSource.

The models are real: a small torch MLP saved as TorchScript and as safetensors (with its
architecture in the header), an ONNX graph built with onnx.helper, and an MLflow model directory
written by mlflow.onnx itself, packed as a canonical tar like the registry stores directories.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from libs.errors.domain_errors import NotFound
from services.gpu_runner.domain.source import FailedGate, GatesBlocked, ResolvedVersion
from services.gpu_runner.domain.tensors import Signature, TensorSpec

IN, HIDDEN, OUT = 4, 8, 3


def mlp(seed: int = 0, in_features: int = IN, hidden: int = HIDDEN, out_features: int = OUT):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(in_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out_features)
    ).eval()


def reference(module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


def torchscript_bytes(module) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def safetensors_bytes(module, in_features: int = IN, hidden: int = HIDDEN, out_features: int = OUT) -> bytes:
    from safetensors.torch import save

    config = {"in_features": in_features, "hidden": [hidden], "out_features": out_features}
    metadata = {"causeway.architecture": "mlp", "causeway.config": json.dumps(config)}
    return save({k: v.contiguous() for k, v in module.state_dict().items()}, metadata=metadata)


def onnx_bytes(weight: np.ndarray | None = None, bias: np.ndarray | None = None) -> bytes:
    """y = relu(x @ W + b), x: FP32[-1, 4] named "x", y: FP32[-1, 3] named "y"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((IN, OUT)).astype(np.float32) if weight is None else weight
    bias = rng.standard_normal(OUT).astype(np.float32) if bias is None else bias
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "affine_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_reference(x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((IN, OUT)).astype(np.float32)
    bias = rng.standard_normal(OUT).astype(np.float32)
    return np.maximum(x.astype(np.float32) @ weight + bias, 0)


def canonical_tar(root: Path) -> bytes:
    """A tar of `root`'s contents as the registry wants directories: sorted, mtime 0, uid 0."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with open(path, "rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def mlflow_onnx_tar() -> bytes:
    """An MLflow model directory saved by mlflow.onnx.save_model, as a canonical tar."""
    import mlflow.onnx
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model"
        mlflow.onnx.save_model(onnx.load_from_string(onnx_bytes()), str(target))
        return canonical_tar(target)


def mlflow_pyfunc_pickle_tar() -> bytes:
    """A custom mlflow.pyfunc model (cloudpickled python_model): the kind the runner refuses."""
    import mlflow.pyfunc
    from mlflow.pyfunc.model import PythonModel  # where it is defined: mypy reads no base through `mlflow.pyfunc.`

    class Doubler(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input * 2

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model"
        mlflow.pyfunc.save_model(str(target), python_model=Doubler())
        return canonical_tar(target)


# Every OIP datatype a torch model can take (all but BYTES), with the test's 2-D shape.
TORCH_DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16",
)  # fmt: skip


def _echo_class():
    import torch

    class Echo(torch.nn.Module):
        """Returns a copy of each of its 13 inputs: one per torch-representable OIP datatype."""

        def forward(self, a, b, c, d, e, f, g, h, i, j, k, m, n):
            return (
                a.clone(), b.clone(), c.clone(), d.clone(), e.clone(), f.clone(), g.clone(),
                h.clone(), i.clone(), j.clone(), k.clone(), m.clone(), n.clone(),
            )  # fmt: skip

    return Echo


def _typed_echo_class():
    import torch

    class TypedEcho(torch.nn.Module):
        """Copies of 11 inputs (every datatype with a typed contents field) plus FP16/BF16 casts."""

        def forward(self, a, b, c, d, e, f, g, h, i, k, m):
            return (
                a.clone(), b.clone(), c.clone(), d.clone(), e.clone(), f.clone(), g.clone(),
                h.clone(), i.clone(), k.clone(), m.clone(),
            )  # fmt: skip

    return TypedEcho


def _half_class():
    import torch

    class Half(torch.nn.Module):
        """FP32 in, FP16 and BF16 out (outputs that only travel raw)."""

        def forward(self, x):
            return x.to(torch.float16), x.to(torch.bfloat16)

    return Half


def echo_torchscript() -> bytes:
    return torchscript_bytes(_echo_class()())


def typed_echo_torchscript() -> bytes:
    return torchscript_bytes(_typed_echo_class()())


def half_torchscript() -> bytes:
    return torchscript_bytes(_half_class()())


def _echo_signature(datatypes) -> Signature:
    return Signature(
        inputs=tuple(TensorSpec(f"in_{d.lower()}", d, (-1, 3)) for d in datatypes),
        outputs=tuple(TensorSpec(f"out_{d.lower()}", d, (-1, 3)) for d in datatypes),
    )


TYPED_DATATYPES = tuple(d for d in TORCH_DATATYPES if d not in ("FP16", "BF16"))
ECHO_SIGNATURE = _echo_signature(TORCH_DATATYPES)
TYPED_ECHO_SIGNATURE = _echo_signature(TYPED_DATATYPES)
HALF_SIGNATURE = Signature(
    inputs=(TensorSpec("x", "FP32", (-1, 3)),),
    outputs=(TensorSpec("half", "FP16", (-1, 3)), TensorSpec("brain", "BF16", (-1, 3))),
)


def _embedding_class():
    import torch

    class Lookup(torch.nn.Module):
        """An embedding table of 10 rows: ids >= 10 fail inside the model (index out of range)."""

        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Embedding(10, 3)

        def forward(self, ids):
            return self.table(ids)

    return Lookup


def embedding_torchscript() -> bytes:
    import torch

    torch.manual_seed(0)
    return torchscript_bytes(_embedding_class()())


EMBEDDING_SIGNATURE = Signature(
    inputs=(TensorSpec("ids", "INT64", (-1, 2)),), outputs=(TensorSpec("vectors", "FP32", (-1, 2, 3)),)
)

MLP_SIGNATURE = Signature(
    inputs=(TensorSpec("input", "FP32", (-1, IN)),), outputs=(TensorSpec("output", "FP32", (-1, OUT)),)
)


class LocalSource:
    """An in-memory ModelSource: versions, blobs by digest, and gates that can be blocked."""

    def __init__(self, environment: str = "dev") -> None:
        self.environment = environment
        self.versions: dict[tuple[str, int], ResolvedVersion] = {}
        self.blobs: dict[str, bytes] = {}
        self.blocked: dict[tuple[str, int], list[FailedGate]] = {}
        self.tamper: set[str] = set()  # digests whose bytes get corrupted in transit
        self.downloads = 0

    def add(
        self,
        name: str,
        version: int,
        data: bytes,
        fmt: str,
        *,
        signature: Signature | None = None,
        layout: str = "FILE",
        tags: dict[str, str] | None = None,
    ) -> ResolvedVersion:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        resolved = ResolvedVersion(name, version, fmt, digest, len(data), layout, signature, tags or {})
        self.versions[(name, version)] = resolved
        return resolved

    def resolve(self, name: str, version: int) -> ResolvedVersion:
        try:
            return self.versions[(name, version)]
        except KeyError:
            raise NotFound(f"model {name!r} has no version {version}") from None

    def check_gates(self, version: ResolvedVersion) -> None:
        failed = self.blocked.get((version.name, version.version))
        if failed:
            raise GatesBlocked(version.name, version.version, self.environment, failed)

    def artifact_chunks(self, digest: str) -> Iterator[bytes]:
        self.downloads += 1
        data = self.blobs[digest]
        if digest in self.tamper:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]
