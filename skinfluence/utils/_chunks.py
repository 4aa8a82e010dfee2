"""Chunking so that blocked computations stay inside a memory budget.

One memory budget governs every allocation that scales with the data or the
parameters: ``InfluenceScorer(memory_budget=...)`` resolves it once
(:func:`parse_memory_budget`) and passes it down; code that is not handed it
explicitly (helpers several calls deep) reads the budget of the enclosing
:func:`memory_budget_context`, and falls back to the library defaults
(``skinfluence._constants.MEMORY_BUDGET_BYTES`` for one block,
``DENSE_MEMORY_BUDGET_BYTES`` for one dense ``p x p`` matrix) when none is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from numbers import Integral
from typing import Any

from .. import _constants

_BUDGET: ContextVar[int | None] = ContextVar("skinfluence_memory_budget", default=None)

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory_budget(value: Any, name: str = "memory_budget") -> int | None:
    """Bytes from an int or a string such as ``"2GB"``, ``"512MiB"``, ``"1.5 GB"``.

    Decimal units (``kB``, ``MB``, ``GB``, ``TB``) are powers of 1000, binary
    ones (``KiB``, ``MiB``, ``GiB``, ``TiB``) powers of 1024; case is
    ignored.  ``None`` stays ``None`` (the library defaults).

    Parameters
    ----------
    value : int, str or None
    name : str, default="memory_budget"
        The argument named in the error message.

    Returns
    -------
    nbytes : int or None

    Raises
    ------
    ValueError
        For a string that is not a number with a known unit, or a budget
        that is not positive.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(
            f"{name} must be bytes (int) or a string like '2GB'; got {value!r}."
        )
    if isinstance(value, Integral):
        nbytes = int(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"{name}={value!r} is not a size: give bytes as an int or a number "
                "with a unit, e.g. '2GB', '512MiB', '1.5 GB' (units: B, kB, MB, GB, "
                "TB, KiB, MiB, GiB, TiB)."
            )
        nbytes = int(float(match.group(1)) * _UNITS[unit])
    else:
        raise ValueError(
            f"{name} must be bytes (int), a string like '2GB', or None; got "
            f"{type(value).__name__} {value!r}."
        )
    if nbytes < 1:
        raise ValueError(
            f"{name} must be a positive number of bytes; got {value!r}. Give e.g. "
            "'256MiB', or None for the defaults."
        )
    return nbytes


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in GiB/MiB with 3 significant digits, for messages."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.3g} GiB"
    return f"{nbytes / 2**20:.3g} MiB"


def context_budget() -> int | None:
    """The budget of the enclosing :func:`memory_budget_context`, or ``None``
    (no budget set by the user)."""
    return _BUDGET.get()


def block_budget(budget: int | None = None) -> int:
    """Bytes for one block: ``budget``, else the context's, else the default."""
    if budget is None:
        budget = _BUDGET.get()
    return int(_constants.MEMORY_BUDGET_BYTES if budget is None else budget)


def dense_budget(budget: int | None = None) -> int:
    """Bytes for one dense ``p x p`` matrix: ``budget``, else the context's,
    else ``DENSE_MEMORY_BUDGET_BYTES``."""
    if budget is None:
        budget = _BUDGET.get()
    return int(_constants.DENSE_MEMORY_BUDGET_BYTES if budget is None else budget)


@contextmanager
def memory_budget_context(budget: int | None) -> Iterator[None]:
    """Make ``budget`` (bytes, or ``None`` for the defaults) the one that
    :func:`chunk_size`, :func:`block_budget` and :func:`dense_budget` read
    inside the ``with`` block (this thread only)."""
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def chunk_size(
    row_width: int,
    batch_size: int | None = None,
    *,
    itemsize: int = 8,
    budget: int | None = None,
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
    budget : int or None, default=None
        Bytes for one block (:func:`block_budget` when ``None``).
    """
    if batch_size is not None:
        return int(batch_size)
    return max(1, block_budget(budget) // (itemsize * max(1, int(row_width))))


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` rows covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def n_workers(n_jobs: int | None) -> int:
    """How many blocks run at once under ``n_jobs`` and the active
    ``joblib.parallel_config``."""
    from joblib import effective_n_jobs

    return max(1, int(effective_n_jobs(n_jobs)))


def map_blocks(
    func: Callable[[Any], Any], blocks: Iterable[Any], *, n_jobs: int | None = None
) -> list[Any]:
    """``[func(b) for b in blocks]``, through ``joblib.Parallel`` when more
    than one worker is asked for (threads by default: BLAS, LAPACK and torch
    release the GIL; a user's ``joblib.parallel_config`` backend wins).

    Each block is computed by the same code on the same rows whatever the
    number of workers, so the results equal the sequential ones.
    """
    if n_workers(n_jobs) == 1:
        return [func(b) for b in blocks]  # lazily: a progress bar ticks per block
    from joblib import Parallel, delayed

    # the caller's memory budget travels with each task: a ContextVar is not
    # inherited by joblib's worker threads (nor by processes)
    budget = _BUDGET.get()
    tasks = (delayed(_within_budget)(budget, func, b) for b in blocks)
    return list(Parallel(n_jobs=n_jobs, prefer="threads")(tasks))


def _within_budget(budget: int | None, func: Callable[[Any], Any], block: Any) -> Any:
    """``func(block)`` under the memory budget of the caller's thread."""
    with memory_budget_context(budget):
        return func(block)
