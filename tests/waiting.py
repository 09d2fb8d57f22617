"""Waiting for an event the tests can observe, instead of sleeping for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> float | None:
    """Poll ``predicate`` until it is true: the seconds that took, or ``None`` at the deadline
    (the caller asserts, so its own assertion says what was expected)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            return None
        time.sleep(interval)
