"""One loader per artifact format; `loader_for` picks it or refuses formats that need unpickling."""

from __future__ import annotations

from services.gpu_runner.domain.source import PICKLE, TORCH_STATE_DICT
from services.gpu_runner.loaders.base import Backend, Loader, UnsupportedArtifact
from services.gpu_runner.loaders.mlflow_loader import MlflowLoader
from services.gpu_runner.loaders.onnx_loader import OnnxLoader
from services.gpu_runner.loaders.safetensors_loader import SafetensorsLoader
from services.gpu_runner.loaders.torchscript import TorchScriptLoader

__all__ = ["Backend", "Loader", "LoaderSet", "UnsupportedArtifact"]

_PICKLED = {
    PICKLE: "a Python pickle",
    TORCH_STATE_DICT: "a torch.save state dict (a pickle)",
}


class LoaderSet:
    """The loaders of this runner, by registry format name."""

    def __init__(self, loaders: list[Loader] | None = None, *, threads: int = 0) -> None:
        loaders = loaders or [TorchScriptLoader(), SafetensorsLoader(), OnnxLoader(threads), MlflowLoader(threads)]
        self._by_format = {fmt: loader for loader in loaders for fmt in loader.formats}

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_format))

    def loader_for(self, fmt: str) -> Loader:
        """The loader for `fmt`; UnsupportedArtifact (FAILED_PRECONDITION) for pickles and unknowns."""
        if fmt in _PICKLED:
            raise UnsupportedArtifact(
                f"format {fmt} is {_PICKLED[fmt]}, and the runner never deserializes pickle: register the model "
                "as TorchScript, ONNX, safetensors with a registered architecture, or an MLflow ONNX model"
            )
        try:
            return self._by_format[fmt]
        except KeyError:
            raise UnsupportedArtifact(
                f"format {fmt or 'UNSPECIFIED'} cannot be served; this runner serves {', '.join(self.formats)}"
            ) from None
