"""safetensors weights plus an allow-listed architecture (libs/architectures, shared with the validator).

safetensors is a JSON header and raw little-endian tensor bytes: nothing in it can execute. The
module is rebuilt from the architecture the file's header names (`causeway.architecture`, config
in `causeway.config`), else the version's `architecture` tag, by the same code the validator
validated it with; the weights must fit it exactly (no missing, unexpected or misshapen tensors).
"""

from __future__ import annotations

from pathlib import Path

from services.gpu_runner.domain.devices import Device
from services.gpu_runner.domain.source import SAFETENSORS, ResolvedVersion
from services.gpu_runner.domain.tensors import Signature, TensorSpec
from services.gpu_runner.loaders.base import Backend, TorchModuleBackend, UnsupportedArtifact


def _header_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as err:  # noqa: BLE001 - safetensors raises its own SafetensorError for any malformed header
        raise UnsupportedArtifact(f"the artifact is not a valid safetensors file: {err}") from None


class SafetensorsLoader:
    formats = (SAFETENSORS,)

    def load(self, path: Path, version: ResolvedVersion, device: Device) -> Backend:
        from safetensors.torch import load_file

        from libs.architectures import registry

        meta = _header_metadata(path)
        try:
            name, config = registry.select(meta, version.tags)
            state = load_file(str(path), device="cpu")
            built = registry.build(name, state, config)
        except registry.ArchitectureError as err:
            raise UnsupportedArtifact(str(err)) from None
        built.module.to(device.torch_device).eval()
        declared = Signature(
            inputs=(TensorSpec(built.input_name, "FP32", (-1, built.in_features)),),
            outputs=(TensorSpec(built.output_name, "FP32", (-1, built.out_features)),),
        )
        return TorchModuleBackend(built.module, device, "safetensors_torch", declared=declared)
