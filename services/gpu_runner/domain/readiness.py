"""Whether the runner is ready for traffic: started, configured models loaded, not draining."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class Readiness:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._draining = False
        self._pending: set[str] = set()
        self.listeners: list = []  # called with the new value whenever it changes

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._started and not self._draining and not self._pending

    @property
    def pending(self) -> set[str]:
        with self._lock:
            return set(self._pending)

    def _change(self, update) -> None:
        before = self.ready
        with self._lock:
            update()
        after = self.ready
        if before != after:
            for listener in self.listeners:
                listener(after)

    def expect(self, keys: Iterable[str]) -> None:
        """Models (name:version) that must be READY before the runner is."""
        self._change(lambda: self._pending.update(keys))

    def done(self, key: str) -> None:
        self._change(lambda: self._pending.discard(key))

    def started(self) -> None:
        self._change(lambda: setattr(self, "_started", True))

    def draining(self) -> None:
        self._change(lambda: setattr(self, "_draining", True))
