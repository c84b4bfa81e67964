"""Loading a model artifact by format, with safe loaders only (plus one explicitly unsafe one).

| format            | loader                                                          |
|-------------------|-----------------------------------------------------------------|
| torchscript       | torch.jit.load (TorchScript IR, no Python)                     |
| safetensors       | safetensors.torch.load_file + an allow-listed architecture     |
| torch_state_dict  | torch.load(weights_only=True, mmap=True) + an architecture      |
| onnx              | onnxruntime CPU session, no custom ops                          |
| pickle            | pickle.load: UNRESTRICTED, only when the job says so (policies  |
|                   | without an environment), only ever inside this sandbox          |

Every loaded model exposes `run(inputs) -> outputs` on numpy arrays, in declared input order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .protocol import NUMPY_TO_OIP


class UnsupportedFormat(ValueError):
    """No loader for this format (or the job does not allow the one that exists)."""


@dataclasses.dataclass
class LoadedModel:
    loader: str
    run: Callable[[Sequence[np.ndarray]], list[np.ndarray]]
    # What the artifact itself declares, where the format says: names, datatypes and shapes.
    declared_inputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    declared_outputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def _to_numpy_list(value: Any, output_names: Sequence[str]) -> list[np.ndarray]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy()]
    if isinstance(value, dict):
        missing = [n for n in output_names if n not in value]
        if missing:
            raise ValueError(f"model returned keys {sorted(value)}; declared outputs {missing} are missing")
        return [_to_numpy_list(value[n], ())[0] for n in output_names]
    if isinstance(value, (list, tuple)):
        return [_to_numpy_list(v, ())[0] for v in value]
    if isinstance(value, np.ndarray):
        return [value]
    raise ValueError(f"model returned {type(value).__name__}, expected tensors")


def _torch_module(module: Any, loader: str, output_names: Sequence[str], details: dict[str, Any]) -> LoadedModel:
    import torch

    def run(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]
        with torch.inference_mode():
            return _to_numpy_list(module(*tensors), output_names)

    return LoadedModel(loader=loader, run=run, details=details)


def _load_torchscript(path: str, job: dict[str, Any]) -> LoadedModel:
    import torch

    module = torch.jit.load(path, map_location="cpu").eval()
    model = _torch_module(module, "torch.jit.load", job.get("output_names", ()), {})
    try:
        args = module.forward.schema.arguments[1:]  # the first is self
        model.declared_inputs = [{"name": a.name} for a in args]
    except (AttributeError, RuntimeError):
        pass
    return model


def _load_weights(path: str, job: dict[str, Any], fmt: str) -> LoadedModel:
    import torch

    if TYPE_CHECKING:
        from libs.architectures import registry as architectures
    else:
        from . import architectures  # libs/architectures/registry.py, staged here: the runner's code too

    metadata: dict[str, str] = {}
    if fmt == "safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(path, framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        state = load_file(path, device="cpu")
        loader = "safetensors.torch.load_file"
    else:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        loader = "torch.load(weights_only=True, mmap=True)"
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise ValueError("a torch_state_dict artifact must hold a flat {name: tensor} mapping")
    # The safetensors header (bound by the digest) names the architecture first, else the version tag.
    arch, config = architectures.select(metadata, {architectures.VERSION_TAG: job.get("architecture", "")})
    built = architectures.build(arch, state, config)
    module = built.module
    params = sum(int(p.numel()) for p in module.parameters())
    return _torch_module(module, f"{loader} + architecture {arch}", (), {"architecture": arch, "parameters": params})


def _ort_type(type_string: str) -> str:
    # onnxruntime reports "tensor(float)" etc.
    inner = type_string[len("tensor(") : -1] if type_string.startswith("tensor(") else type_string
    names = {"float": "float32", "double": "float64", "float16": "float16", "bool": "bool"}
    return NUMPY_TO_OIP.get(names.get(inner, inner), inner.upper())


def _ort_shape(shape: Sequence[Any]) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def _load_onnx(path: str, job: dict[str, Any]) -> LoadedModel:
    import onnxruntime as ort

    options = ort.SessionOptions()
    threads = int(job.get("threads", 1))
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.use_deterministic_compute = True
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    input_names = [i.name for i in inputs]

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(arrays) != len(input_names):
            raise ValueError(f"model takes {len(input_names)} inputs, got {len(arrays)}")
        feed = {}
        declared = job.get("input_names") or input_names
        for name, array in zip(declared, arrays, strict=True):
            if name not in input_names:
                raise ValueError(f"model has no input named {name!r} (it has {input_names})")
            feed[name] = array
        return list(session.run(None, feed))

    return LoadedModel(
        loader="onnxruntime.InferenceSession(CPUExecutionProvider)",
        run=run,
        declared_inputs=[{"name": i.name, "datatype": _ort_type(i.type), "shape": _ort_shape(i.shape)} for i in inputs],
        declared_outputs=[
            {"name": o.name, "datatype": _ort_type(o.type), "shape": _ort_shape(o.shape)} for o in outputs
        ],
    )


def _load_pickle(path: str, job: dict[str, Any]) -> LoadedModel:
    if not job.get("unrestricted_pickle"):
        raise UnsupportedFormat("raw pickles are loaded only under a policy that allows unrestricted pickle loading")
    import pickle

    with open(path, "rb") as handle:
        obj = pickle.load(handle)  # noqa: S301 - the point of this loader; only ever inside the sandbox
    classify = str(job.get("task", "")).endswith("classification")
    if classify and hasattr(obj, "predict_proba"):
        call = obj.predict_proba
    elif hasattr(obj, "predict"):
        call = obj.predict
    elif callable(obj):
        call = obj
    else:
        raise ValueError(f"unpickled a {type(obj).__name__}, which has no predict/predict_proba and is not callable")

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(call(*arrays))]

    return LoadedModel(loader="pickle.load (UNRESTRICTED, sandbox only)", run=run, details={"type": type(obj).__name__})


LOADERS: dict[str, Callable[[str, dict[str, Any]], LoadedModel]] = {
    "torchscript": _load_torchscript,
    "safetensors": lambda path, job: _load_weights(path, job, "safetensors"),
    "torch_state_dict": lambda path, job: _load_weights(path, job, "torch_state_dict"),
    "onnx": _load_onnx,
    "pickle": _load_pickle,
}


def load(path: str, fmt: str, job: dict[str, Any]) -> LoadedModel:
    """Load `path` as `fmt`; UnsupportedFormat if there is no loader for it."""
    loader = LOADERS.get(fmt)
    if loader is None:
        raise UnsupportedFormat(f"no loader for format {fmt!r}")
    return loader(path, job)


def datatype_of(array: np.ndarray) -> str:
    return NUMPY_TO_OIP.get(str(array.dtype), str(array.dtype).upper())
