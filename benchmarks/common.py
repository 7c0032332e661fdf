"""Shared helpers for the benchmark adapters."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict, List, Tuple


class NotApplicable(Exception):
    """Raised by an adapter for a problem its library cannot fit (reason = message)."""


def reps_for(problem, reps: int) -> Tuple[int, bool]:
    """(timed repetitions, do an untimed warm-up fit first) for a problem size."""
    if problem.size in ("small", "medium"):
        # medium fits take ~0.1 s: a median of 3 cold fits swings by a fifth on a quiet machine
        return max(1, reps), True
    # large: at most 3 timed fits (and the time budget), no warm-up
    return max(1, min(3, reps)), False


def time_fit(fit_once: Callable[[], Any], reps: int, warmup: bool, budget: float = 90.0) -> Tuple[Any, List[float]]:
    """Run ``fit_once`` ``reps`` times (after an optional warm-up), timing each
    call with ``time.perf_counter``.  Stops early once ``budget`` seconds of
    timed fitting have been spent (at least one timed repetition is always
    done).  Returns the last result and the list of timings."""
    if warmup:
        t0 = time.perf_counter()
        fit_once()
        if time.perf_counter() - t0 > budget / 3:
            warmup = False  # slow problem: no more warm-ups would be sensible
    times: List[float] = []
    result = None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fit_once()
        times.append(time.perf_counter() - t0)
        if sum(times) > budget:
            break
    return result, times


def summary(loglik: float, times: List[float], **extra) -> Dict[str, Any]:
    out = {
        "loglik": float(loglik),
        "seconds": statistics.median(times),
        "min_seconds": min(times),
        "reps": len(times),
        "all_seconds": list(times),
    }
    out.update(extra)
    return out
