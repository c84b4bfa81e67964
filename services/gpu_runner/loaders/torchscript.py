"""TorchScript archives (torch.jit.save), loaded with torch.jit.load onto the runner's device.

A TorchScript archive is a zip whose `code/` holds the compiled program and whose `*.pkl` records
are read by TorchScript's own C++ unpickler, which builds only tensors and TorchScript types and
never imports Python globals. A `torch.save` file is also a zip with a `data.pkl`, but that one is
a Python pickle: it is refused here, before torch sees it, because it has no `code/`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from services.gpu_runner.domain.devices import Device
from services.gpu_runner.domain.source import TORCHSCRIPT, ResolvedVersion
from services.gpu_runner.loaders.base import Backend, TorchModuleBackend, UnsupportedArtifact


def check_torchscript_archive(path: Path) -> None:
    """Raise UnsupportedArtifact unless `path` is a TorchScript zip (compiled code, no eager pickle)."""
    if not zipfile.is_zipfile(path):
        raise UnsupportedArtifact("the artifact is not a TorchScript archive (not a zip file)")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    has_code = any("/code/" in n and n.endswith(".py") for n in names)
    has_constants = any(n.endswith("/constants.pkl") for n in names)
    if not (has_code and has_constants):
        raise UnsupportedArtifact(
            "the artifact is a torch zip without TorchScript code (a torch.save pickle?); the runner never "
            "unpickles: save the model with torch.jit.script(model).save(path) or register it as safetensors"
        )


class TorchScriptLoader:
    formats = (TORCHSCRIPT,)

    def load(self, path: Path, version: ResolvedVersion, device: Device) -> Backend:
        import torch

        check_torchscript_archive(path)
        try:
            module = torch.jit.load(str(path), map_location=device.torch_device)
        except (RuntimeError, ValueError) as err:
            raise UnsupportedArtifact(f"torch.jit.load refused the artifact: {str(err).splitlines()[0]}") from None
        module.eval()
        return TorchModuleBackend(module, device, "pytorch_torchscript")
