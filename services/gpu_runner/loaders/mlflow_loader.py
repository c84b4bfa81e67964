"""MLflow models (an MLmodel directory), served through a pickle-free pyfunc flavor.

`mlflow.pyfunc.load_model` would import the flavor's loader module and, for most flavors, unpickle
(cloudpickle for custom pyfunc models, torch.save or torch.export archives with pickled constants
for mlflow.pytorch, joblib for sklearn). The runner never does that. It reads `MLmodel` as plain
YAML and serves the flavors whose artifacts are data, not code: today `onnx` (the pyfunc
`loader_module: mlflow.onnx`), run on onnxruntime exactly as MLflow's own pyfunc would. Any other
flavor is refused with what to do instead.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from services.gpu_runner.domain.devices import Device
from services.gpu_runner.domain.source import MLFLOW_MODEL, ResolvedVersion
from services.gpu_runner.loaders.base import Backend, UnsupportedArtifact
from services.gpu_runner.loaders.onnx_loader import load_onnx

# pyfunc loader modules whose data the runner can load without unpickling.
PICKLE_FREE_LOADERS = {"mlflow.onnx": "onnx"}


def find_model_dir(root: Path) -> Path:
    """The directory holding `MLmodel`: the root or its single top-level directory."""
    if (root / "MLmodel").is_file():
        return root
    children = [c for c in root.iterdir() if c.is_dir()]
    if len(children) == 1 and (children[0] / "MLmodel").is_file():
        return children[0]
    raise UnsupportedArtifact("the artifact is not an MLflow model directory (no MLmodel file at its top)")


def _inside(base: Path, relative: str) -> Path:
    path = (base / relative).resolve()
    if not path.is_relative_to(base.resolve()):
        raise UnsupportedArtifact(f"MLmodel points outside the model directory: {relative!r}")
    return path


class MlflowLoader:
    formats = (MLFLOW_MODEL,)

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads

    def load(self, path: Path, version: ResolvedVersion, device: Device) -> Backend:
        if not path.is_dir():
            raise UnsupportedArtifact("an MLflow model must be registered as a directory (ARTIFACT_LAYOUT_TAR)")
        model_dir = find_model_dir(path)
        try:
            mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise UnsupportedArtifact(f"MLmodel is not valid YAML: {err}") from None
        flavors = (mlmodel or {}).get("flavors") or {}
        pyfunc = flavors.get("python_function") or {}
        loader_module = pyfunc.get("loader_module", "")
        if "python_function" not in flavors:
            raise UnsupportedArtifact("the MLflow model has no python_function (pyfunc) flavor")
        if loader_module not in PICKLE_FREE_LOADERS:
            raise UnsupportedArtifact(
                f"the MLflow model's pyfunc loader {loader_module or '(custom python_model)'} deserializes pickle "
                f"(flavors: {', '.join(sorted(flavors))}); the runner never unpickles: log the model with "
                "mlflow.onnx, or register it as TorchScript, ONNX or safetensors"
            )
        flavor = flavors.get(PICKLE_FREE_LOADERS[loader_module]) or {}
        data = flavor.get("data") or pyfunc.get("data") or pyfunc.get("model_path")
        if not data:
            raise UnsupportedArtifact(f"the MLflow model's {loader_module} flavor names no data file")
        model_file = _inside(model_dir, data)
        if not model_file.is_file():
            raise UnsupportedArtifact(f"the MLflow model's data file {data!r} is missing")
        weight_bytes = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
        return load_onnx(model_file, device, weight_bytes=weight_bytes, threads=self.threads, platform="mlflow_pyfunc")
