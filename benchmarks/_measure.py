"""Seconds and peak memory of a callable, measured in the benchmark's process.

Time: the best of ``repeats`` runs (machines here are shared and noisy; the
minimum is the least disturbed run).  Memory: the callable runs once more in a
forked child; its peak resident set (``ru_maxrss``, which catches short
spikes) minus its resident set at the start is the peak extra memory.  This
counts numpy, BLAS and torch allocations alike.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _child(fn: Callable[[], Any], conn: Any) -> None:
    start = _rss_mb()
    fn()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send(max(0.0, peak - start))
    conn.close()


def peak_memory_mb(fn: Callable[[], Any]) -> float:
    """Peak extra resident memory (MiB) of one call of ``fn``."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, child))
    proc.start()
    value = parent.recv()
    proc.join()
    return float(value)


def best_seconds(fn: Callable[[], Any], repeats: int = 3) -> tuple[Any, float]:
    """``(result of the last run, best wall-clock seconds over repeats)``."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best
