"""Which device models run on: CUDA when a GPU is present (and allowed), else the host CPU.

Everything here is tested on CPU; the CUDA branches only read what torch reports about the GPU.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import platform

import psutil

from libs.errors.domain_errors import FailedPrecondition


class DeviceType(enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"


@dataclasses.dataclass(frozen=True)
class Device:
    type: DeviceType
    index: int
    name: str
    total_memory_bytes: int

    @property
    def torch_device(self) -> str:
        return "cpu" if self.type is DeviceType.CPU else f"cuda:{self.index}"

    @property
    def label(self) -> str:
        return self.torch_device


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def cpu_device() -> Device:
    return Device(DeviceType.CPU, 0, f"{_cpu_name()} ({os.cpu_count()} cores)", psutil.virtual_memory().total)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cuda_device(index: int = 0) -> Device:
    import torch

    props = torch.cuda.get_device_properties(index)
    return Device(DeviceType.CUDA, index, props.name, int(props.total_memory))


def select_device(preference: str = "auto") -> Device:
    """`auto`: CUDA device 0 when torch sees one, else the CPU; `cpu` or `cuda` force a choice."""
    if preference == "cpu":
        return cpu_device()
    if preference == "cuda" or (preference == "auto" and cuda_available()):
        if not cuda_available():
            raise FailedPrecondition("a CUDA device was requested but torch sees none on this machine")
        return cuda_device(0)
    return cpu_device()


def device_memory_in_use(device: Device) -> int:
    """Bytes the process holds on `device` now: CUDA allocator bytes, or the process RSS on CPU."""
    if device.type is DeviceType.CUDA:
        import torch

        return int(torch.cuda.memory_allocated(device.index))
    return psutil.Process().memory_info().rss
