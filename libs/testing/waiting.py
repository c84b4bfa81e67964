"""Wait for something a test can observe, with a deadline, instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "",
) -> T:
    """Call `condition` until it returns something truthy and return that value.

    Raises AssertionError (with `message`, or its result when callable) once `timeout` seconds
    passed. The timeout only bounds a failing test, so it is generous: a loaded machine is slow.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            raise AssertionError(f"not reached within {timeout} s: {detail or condition}")
        time.sleep(interval)
