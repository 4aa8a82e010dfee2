"""The ``k`` most and least supportive training rows per query, streamed.

``S = grad f_q^T (H + damping I)^{-1} G^T`` is never held whole: the query
gradients are solved once (per query block), the training gradients are
streamed in row blocks, and each block's scores are merged into a running
top-``k`` (``np.argpartition``), so memory is ``O(n_query * k)`` plus one
block, whatever ``n_train``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..utils._chunks import chunk_size, chunks, map_blocks, n_workers
from ..utils._progress import progress
from ._core import _grad_products, _solve_block, query_grads


def _merge(best: tuple[NDArray, NDArray] | None, values: NDArray, index: NDArray, k):
    """Keep the ``k`` largest ``values`` per row (with their ``index``)."""
    if best is not None:
        values = np.hstack([best[0], values])
        index = np.hstack([best[1], index])
    if values.shape[1] > k:
        keep = np.argpartition(-values, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(values, keep, axis=1)
        index = np.take_along_axis(index, keep, axis=1)
    return values, index


def _sorted(values: NDArray, index: NDArray) -> tuple[NDArray, NDArray]:
    """Decreasing ``values`` per row, ties by increasing ``index``."""
    order = np.lexsort((index, -values), axis=1)
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(
        index, order, axis=1
    )


def top_influence(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    *,
    k: int,
    target: str = "loss",
    sign: float = 1.0,
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
    memory_budget: int | None = None,
    n_jobs: int | None = None,
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """The ``k`` largest and ``k`` smallest ``sign * S[j, :]`` per query.

    ``S[j, i] = grad f_j^T (H + damping I)^{-1} g_i`` as in
    :func:`pairwise_influence`, without forming it: the query gradients are
    solved in blocks sized from the memory budget, the training gradients are
    streamed in row blocks (``n_jobs`` of them at a time), and a running
    top-``k`` per query keeps ``O(n_query * k)`` values between blocks.

    Parameters
    ----------
    adapter, backend
        The fitted model's adapter and curvature backend.
    X, y
        Query rows (``y`` required for ``target="loss"``).
    k : int
        Rows kept per query and side, ``1 <= k <= adapter.n_train``.
    target : {"loss", "prediction"}, default="loss"
    sign : {1.0, -1.0}, default=1.0
        The ranked quantity is ``sign * S``.
    train_gradient, batch_size, verbose, memory_budget, n_jobs
        As :func:`pairwise_influence`.

    Returns
    -------
    top_index, top_values : ndarray of shape (n_query, k)
        Positions among the trained rows of the largest ``sign * S``, and
        the values, decreasing (ties by increasing position).
    bottom_index, bottom_values : ndarray of shape (n_query, k)
        The same for the smallest ``sign * S``, increasing.
    """
    Gq = query_grads(adapter, X, y, target)
    n, p, m = adapter.n_train, adapter.n_params, len(Gq)
    total = train_gradient == "total"
    # blocks sized from the whole budget whatever n_jobs is, as in
    # pairwise_influence: the same blocks, the same numbers, and no refusal of
    # a budget nobody set; up to n_jobs blocks are in memory at once
    budget = memory_budget
    out = [np.empty((m, k), dtype=np.intp), np.empty((m, k))]
    out += [np.empty((m, k), dtype=np.intp), np.empty((m, k))]
    if m == 0:
        return tuple(out)
    # the solved queries are held through the stream: (p, b) plus 4k per query
    qsize = min(m, _solve_block(adapter, batch_size, backend, budget, extra=p + 4 * k))
    wave = n_workers(n_jobs)
    for q in progress(list(chunks(m, qsize)), desc="explain", verbose=verbose):
        Qinv = sign * np.asarray(backend.solve(Gq[q].T), dtype=np.float64)
        b = Qinv.shape[1]
        # one block holds its gradients (p) and its scores twice (merge)
        tsize = chunk_size(p + 2 * b + 4 * k, batch_size, budget=budget)
        tblocks = list(chunks(n, tsize))
        top = bottom = None

        def block(t: slice, Qinv: NDArray = Qinv) -> tuple:
            V = _grad_products(adapter, Qinv, t, total).T  # (b, rows)
            idx = np.broadcast_to(np.arange(t.start, t.stop), V.shape)
            return _merge(None, V, idx, k), _merge(None, -V, idx, k)

        for start in range(0, len(tblocks), wave):
            for hi, lo in map_blocks(
                block, tblocks[start : start + wave], n_jobs=n_jobs
            ):
                top = _merge(top, *hi, k)
                bottom = _merge(bottom, *lo, k)
        top_v, top_i = _sorted(*top)
        low_v, low_i = _sorted(*bottom)
        out[0][q], out[1][q], out[2][q], out[3][q] = top_i, top_v, low_i, -low_v
    return tuple(out)
