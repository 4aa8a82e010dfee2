"""Independent refits in parallel through joblib, with sequential results.

The ground truths (:func:`loo_change`, :func:`pbrf_change`,
:func:`proximal_change`, :func:`lds_ground_truth`) retrain once per removed
point or subset, and the retrains do not depend on each other.  They run
through :class:`joblib.Parallel` with the backend left to joblib: loky worker
processes by default (the refits are mostly GIL-holding Python and scipy
L-BFGS, so threads would not help), or whatever a surrounding
``joblib.parallel_config`` chooses, e.g. ``backend="dask"`` to send the same
tasks to a ``dask.distributed`` cluster.

Identical to sequential.  A task is a pure function of its inputs: the
results are collected in task order (never completion order), and each refit
runs under its own seed (:func:`seeded`), derived from what it refits (the
removed row's position, or the subset's drawn seed) rather than from the
order it happens to run in, so a refit that draws from the global numpy or
torch generator (dropout, batch order with ``random_state=None``) gets the
same numbers in a worker as in the calling process.  (Threads share those
global generators: under ``parallel_config(backend="threading")`` the refits
take turns holding them, so they stay reproducible and the caller's state is
restored, at the price of running one at a time.)  Kernels can
round differently on other thread counts or memory layouts: the workers
receive contiguous copies of strided query arrays, so the caller measures
on contiguous copies too (:func:`contiguous`), and joblib and dask run
their workers' BLAS single-threaded, as the tests do the caller's.

What travels.  A task carries the adapter (the training data and the fitted
model) and a chunk of the work.  Sequential runs (one worker) use chunks of
one, so the progress bar ticks per refit and nothing is pickled.  Parallel
runs cut the work into at most :data:`TASKS_PER_WORKER` contiguous chunks
per worker: the adapter travels at most that many times per worker (with
loky, joblib also memory-maps the large numpy arrays inside it once per call
instead of copying them), while several chunks per worker still balance
uneven refit times and keep the progress bar moving.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral
from typing import Any

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from numpy.typing import NDArray
from tqdm.auto import tqdm

#: Chunks of work per worker in a parallel run (see the module notes).
TASKS_PER_WORKER = 4
# root of the per-refit seeds where the caller gives no random_state
_ENTROPY = 0x5EED1E55


def check_n_jobs(n_jobs: Any, name: str = "n_jobs") -> int | None:
    """``n_jobs`` as joblib takes it, or a TypeError/ValueError naming it."""
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, Integral):
        raise TypeError(
            f"{name} must be an int or None (joblib's default); got {n_jobs!r}."
        )
    if n_jobs == 0:
        raise ValueError(
            f"{name}=0 runs nothing; pass a positive number of workers, -1 for "
            "all cores, or None for joblib's default."
        )
    return int(n_jobs)


def resolve_n_jobs(n_jobs: Any, scorer: Any) -> int | None:
    """``n_jobs``, else the scorer's own ``n_jobs``, else ``None`` (joblib's
    default: 1, unless a ``joblib.parallel_config`` says otherwise)."""
    n_jobs = check_n_jobs(n_jobs)
    if n_jobs is None:
        n_jobs = check_n_jobs(getattr(scorer, "n_jobs", None), "scorer.n_jobs")
    return n_jobs


def chunks(n_items: int, n_jobs: int | None) -> list[NDArray]:
    """Contiguous positions ``0..n_items-1`` cut into the tasks of one call."""
    workers = effective_n_jobs(n_jobs)
    n_chunks = n_items if workers <= 1 else min(n_items, TASKS_PER_WORKER * workers)
    return [c for c in np.array_split(np.arange(n_items), max(n_chunks, 1)) if c.size]


def run(
    fn: Callable[..., list],
    tasks: Iterable[Sequence[Any]],
    *,
    n_jobs: int | None,
) -> Iterator[list]:
    """``fn(*task)`` for each task through joblib, yielded in task order as
    the tasks complete (``fn`` returns a list: one entry per item of its
    chunk).  Warnings raised in worker processes are raised again here."""
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    here = _process()
    calls = (delayed(_relay)(here, fn, *task) for task in tasks)
    for part, caught in parallel(calls):
        for message, category, filename, lineno in caught:
            warnings.warn_explicit(message, category, filename, lineno)
        yield part


def progress_bar(total: int, desc: str, verbose: int) -> tqdm:
    """A tqdm bar shown only when ``verbose > 0``; update it per item."""
    return tqdm(total=total, desc=desc, disable=not verbose, leave=False)


def _process() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def _relay(
    caller: tuple[str, int], fn: Callable[..., list], *args: Any
) -> tuple[list, list]:
    """``fn(*args)`` and, in another process, the warnings it raised (a
    worker's warnings are otherwise lost), for the caller to raise again.  In
    the calling process (sequential, threads) warnings pass as they come."""
    if _process() == caller:
        return fn(*args), []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        out = fn(*args)
    caught = [(str(r.message), r.category, r.filename, r.lineno) for r in records]
    return out, caught


def contiguous(a: Any) -> Any:
    """A strided numpy view as a contiguous copy, anything else as it is.

    Pickling copies a strided array into a contiguous one, and kernels can
    round differently on the two layouts (torch does, by an ulp); measuring
    on the same layout in the caller and in the workers keeps parallel runs
    equal to sequential ones.
    """
    if isinstance(a, np.ndarray) and not (a.flags.c_contiguous or a.flags.f_contiguous):
        return np.ascontiguousarray(a)
    return a


def refit_seed(position: int | None) -> int:
    """The seed of the refit that removes the training row at ``position``
    (``None``: the reference refit), independent of scheduling."""
    key = 0 if position is None else int(position) + 1
    return int(np.random.SeedSequence([_ENTROPY, key]).generate_state(1)[0])


#: The global generators are process-wide: refits on threads (joblib's
#: threading backend) take turns holding them, so each is seeded as in a
#: sequential run and the caller's state is restored exactly.  Processes
#: (loky, dask) each have their own.
_GLOBAL_RNG_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a refit with numpy's and (if loaded) torch's global generators
    seeded, restoring the caller's generators afterwards (one refit at a
    time per process holds them)."""
    with _GLOBAL_RNG_LOCK:
        # the legacy global generator is the one sklearn's random_state=None uses
        state = np.random.get_state()  # noqa: NPY002
        np.random.seed(seed % 2**32)  # noqa: NPY002
        torch = sys.modules.get("torch")
        try:
            if torch is None:
                yield
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    yield
        finally:
            np.random.set_state(state)  # noqa: NPY002
