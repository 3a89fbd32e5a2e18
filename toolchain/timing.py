"""Wall-clock timing of a call: warm-up, then the median of repeats (robust on a noisy machine)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, budget_s: float = 10.0) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    deadline = time.perf_counter() + budget_s
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
        if time.perf_counter() > deadline and len(samples) >= 3:
            break
    return 1e3 * statistics.median(samples)
