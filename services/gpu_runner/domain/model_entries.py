"""What the runner holds per model version: its state, and the snapshot the API sees."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import threading

from services.gpu_runner.domain.batching import Batcher, BatchingConfig
from services.gpu_runner.domain.devices import Device
from services.gpu_runner.domain.source import ResolvedVersion
from services.gpu_runner.domain.tensors import Signature
from services.gpu_runner.loaders import Backend


class ModelState(enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    FAILED = "FAILED"


@dataclasses.dataclass(frozen=True)
class ModelView:
    """A snapshot of one held model, for the API."""

    name: str
    version: int
    state: ModelState
    digest: str
    format: str
    platform: str
    memory_bytes: int
    device: Device
    batching: BatchingConfig
    signature: Signature | None
    load_time: dt.datetime | None
    message: str
    in_flight: int
    pins: int


@dataclasses.dataclass(eq=False)
class Entry:
    name: str
    version: int
    batching: BatchingConfig
    device: Device
    state: ModelState = ModelState.LOADING
    resolved: ResolvedVersion | None = None
    backend: Backend | None = None
    batcher: Batcher | None = None
    memory_bytes: int = 0
    load_time: dt.datetime | None = None
    message: str = ""
    last_used: float = 0.0
    in_flight: int = 0
    pins: int = 0
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    error: BaseException | None = None

    @property
    def key(self) -> str:
        return f"{self.name}:{self.version}"

    def view(self) -> ModelView:
        r, b = self.resolved, self.backend
        return ModelView(
            name=self.name,
            version=self.version,
            state=self.state,
            digest=r.digest if r else "",
            format=r.format if r else "",
            platform=b.platform if b else "",
            memory_bytes=self.memory_bytes,
            device=self.device,
            batching=self.batching,
            signature=b.signature if b else None,
            load_time=self.load_time,
            message=self.message,
            in_flight=self.in_flight,
            pins=self.pins,
        )
