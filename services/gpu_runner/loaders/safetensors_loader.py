"""safetensors weights plus an architecture registered in `architectures.py`.

safetensors is a JSON header and raw little-endian tensor bytes: nothing in it can execute. The
module is rebuilt from the named architecture and its config, and the weights must match its
state dict exactly (no missing, unexpected or misshapen tensors).
"""

from __future__ import annotations

import json
from pathlib import Path

from services.gpu_runner.domain.devices import Device
from services.gpu_runner.domain.source import SAFETENSORS, ResolvedVersion
from services.gpu_runner.loaders.architectures import ARCHITECTURE_KEY, CONFIG_KEY, architecture, mlp_v1_widths
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

        meta = _header_metadata(path)
        # The file's own header first (bound by the digest); else the version's `architecture` tag,
        # which is also what the validator reads.
        name = meta.get(ARCHITECTURE_KEY) or version.tags.get("architecture") or version.tags.get(ARCHITECTURE_KEY)
        if not name:
            raise UnsupportedArtifact(
                f"safetensors weights need an architecture: set {ARCHITECTURE_KEY!r} (and {CONFIG_KEY!r}) in the "
                "file's metadata or the version's tags"
            )
        raw_config = meta.get(CONFIG_KEY) or version.tags.get(CONFIG_KEY) or "{}"
        try:
            config = json.loads(raw_config)
        except ValueError as err:
            raise UnsupportedArtifact(f"{CONFIG_KEY} is not valid JSON: {err}") from None
        if not isinstance(config, dict):
            raise UnsupportedArtifact(f"{CONFIG_KEY} must be a JSON object")
        arch = architecture(name)
        if name == "mlp/v1" and "widths" not in config:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
            config = {**config, "widths": mlp_v1_widths(shapes)}
        module = arch.build(config)
        state = load_file(str(path), device=device.torch_device)
        try:
            result = module.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatches are raised even when strict=False
            raise UnsupportedArtifact(f"the weights do not fit architecture {name!r}: {err}") from None
        problems = []
        if result.missing_keys:
            problems.append(f"missing {sorted(result.missing_keys)}")
        if result.unexpected_keys:
            problems.append(f"unexpected {sorted(result.unexpected_keys)}")
        if problems:
            raise UnsupportedArtifact(f"the weights do not fit architecture {name!r}: " + "; ".join(problems))
        module.to(device.torch_device).eval()
        return TorchModuleBackend(module, device, "safetensors_torch", declared=arch.signature(config))
