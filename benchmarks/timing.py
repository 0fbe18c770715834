"""Timing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def best_of(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    """The fastest of `repeat` calls of `run`, as timeit does, and what the last call
    returned: on a shared machine the fastest run is the one least disturbed."""
    best = float("inf")
    result: T
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result
