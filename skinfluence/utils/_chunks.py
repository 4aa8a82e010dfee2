"""Chunking so that blocked computations stay inside a memory budget."""

from __future__ import annotations

from collections.abc import Iterator

from .._constants import MEMORY_BUDGET_BYTES


def chunk_size(
    row_width: int, batch_size: int | None = None, *, itemsize: int = 8
) -> int:
    """Rows per chunk: ``batch_size`` if given, else what fits the memory budget.

    Parameters
    ----------
    row_width : int
        Number of values one row of the largest temporary holds.
    batch_size : int or None
        Explicit choice; wins when given.
    itemsize : int, default=8
        Bytes per value.
    """
    if batch_size is not None:
        return int(batch_size)
    return max(1, MEMORY_BUDGET_BYTES // (itemsize * max(1, row_width)))


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` rows covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
