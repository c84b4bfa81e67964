"""The device memory budget: how many bytes loaded models may hold, and who holds what.

The budget is bookkeeping, not an allocator: a model reserves an estimate before it loads (so two
concurrent loads cannot both count on the same free bytes), then the reservation is set to what
the loaded, warmed-up model actually holds. Eviction policy lives with the models
(`domain/models.py`); this class only answers "does it fit" and keeps the numbers consistent.
"""

from __future__ import annotations

import dataclasses
import threading

from libs.errors.domain_errors import ResourceExhausted


class MemoryExhausted(ResourceExhausted):
    """A model does not fit. Carries the numbers for a QuotaFailure detail."""

    def __init__(self, message: str, *, needed: int, free: int, budget: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.free = free
        self.budget = budget


@dataclasses.dataclass(frozen=True)
class BudgetSnapshot:
    budget_bytes: int
    used_bytes: int
    holders: dict[str, int]

    @property
    def free_bytes(self) -> int:
        return self.budget_bytes - self.used_bytes


def human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


class MemoryBudget:
    """Reservations against a fixed number of bytes, by holder key (e.g. "name:version")."""

    def __init__(self, budget_bytes: int, device_label: str = "cpu") -> None:
        if budget_bytes <= 0:
            raise ValueError("the memory budget must be positive")
        self.budget_bytes = budget_bytes
        self.device_label = device_label
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(self._held.values())

    @property
    def free_bytes(self) -> int:
        return self.budget_bytes - self.used_bytes

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.free_bytes

    def reserve(self, holder: str, nbytes: int) -> None:
        """Hold `nbytes` for `holder` (replacing what it held) or raise MemoryExhausted."""
        with self._lock:
            others = sum(v for k, v in self._held.items() if k != holder)
            free = self.budget_bytes - others
            if nbytes > free:
                raise MemoryExhausted(
                    f"{holder} needs {human(nbytes)} of {self.device_label} memory but only {human(free)} of the "
                    f"{human(self.budget_bytes)} budget is free; unload a model first",
                    needed=nbytes,
                    free=free,
                    budget=self.budget_bytes,
                )
            self._held[holder] = nbytes

    def release(self, holder: str) -> int:
        with self._lock:
            return self._held.pop(holder, 0)

    def held(self, holder: str) -> int:
        with self._lock:
            return self._held.get(holder, 0)

    def snapshot(self) -> BudgetSnapshot:
        with self._lock:
            held = dict(self._held)
        return BudgetSnapshot(self.budget_bytes, sum(held.values()), held)
