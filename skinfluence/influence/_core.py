"""Influence math, blocked over query x train so memory stays bounded.

Sign convention (one for the whole library)::

    S[j, i] = grad f_j(theta)^T (H + damping I)^{-1} g_i

where ``g_i`` is training point ``i``'s (weighted) loss gradient.  Removing
training point ``i`` and refitting changes ``f_j`` by about ``S[j, i] / n``.
With ``f`` a query loss, ``S > 0`` means point ``i`` helps query ``j``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._constants import (
    NEWTON_STATIONARITY_RTOL,
    STATIONARITY_ATOL,
    STATIONARITY_RTOL,
)
from ..exceptions import NotAtOptimumWarning
from ..utils._chunks import chunk_size, chunks
from ..utils._progress import progress
from ..utils._validation import check_indices
from ._kronecker import (
    kronecker_pairwise,
    kronecker_self_influence,
    outer_product_layers,
)

TARGETS = ("loss", "prediction")


def query_grads(
    adapter: Any, X: ArrayLike, y: ArrayLike | None, target: str
) -> NDArray:
    """Gradients of the measured quantity ``f`` for each query row, (m, p)."""
    if target == "loss":
        if y is None:
            raise ValueError(
                "target='loss' needs y; pass y or use target='prediction'."
            )
        return adapter.loss_grads(X, y)
    if target == "prediction":
        return adapter.prediction_grads(X)
    raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")


def pairwise_influence(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    *,
    target: str = "loss",
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """``S[j, i] = grad f_j^T (H + damping I)^{-1} g_i``, shape (m, n_train).

    The query side is preconditioned (one solve per query row) and multiplied
    against training gradients streamed in chunks.
    """
    Gq = query_grads(adapter, X, y, target)
    n, p = adapter.n_train, adapter.n_params
    S = np.empty((len(Gq), n))
    qsize = _solve_block(adapter, batch_size)
    tsize = chunk_size(p, batch_size)
    blocks = list(chunks(len(Gq), qsize))
    # nn.Linear-only networks: scores from layer statistics (outer products)
    layers = outer_product_layers(adapter) if train_gradient == "loss" else None
    for q in progress(blocks, desc="influence", verbose=verbose):
        Qinv = backend.solve(Gq[q].T)  # (p, b)
        fast = None if layers is None else kronecker_pairwise(adapter, layers, Qinv)
        if fast is not None:
            S[q] = fast
            continue
        layers = None
        for t in chunks(n, tsize):
            G = adapter.train_grads(t, total=train_gradient == "total")
            S[q, t] = (G @ Qinv).T
    return S


def self_influence(
    adapter: Any,
    backend: Any,
    *,
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """``g_i^T (H + damping I)^{-1} g_i`` for every training point, shape (n,).

    With ``train_gradient="total"`` the right factor is the total gradient, as
    in :func:`pairwise_influence`: the value is then the predicted change of
    point ``i``'s own loss on its removal, and can be negative.
    """
    if train_gradient == "loss":
        # K-FAC/EK-FAC: a weighted sum of squared rotated factors per row
        fast = kronecker_self_influence(adapter, backend)
        if fast is not None:
            return fast
    n = adapter.n_train
    out = np.empty(n)
    blocks = list(chunks(n, _solve_block(adapter, batch_size)))
    for t in progress(blocks, desc="self-influence", verbose=verbose):
        G = adapter.train_grads(t)
        Gt = adapter.train_grads(t, total=True) if train_gradient == "total" else G
        out[t] = np.einsum("ij,ji->i", G, backend.solve(Gt.T))
    return out


def _solve_block(adapter: Any, batch_size: int | None) -> int:
    """Right-hand sides per solve: a matrix-free Hessian product allocates
    ``(n_train, n_outputs, block)`` temporaries and a score block is
    ``(block, n_train)``, so both count against the memory budget."""
    width = max(adapter.n_params, adapter.n_train * adapter.n_outputs)
    return chunk_size(width, batch_size)


def parameter_change(
    adapter: Any, backend: Any, indices: ArrayLike, *, train_gradient: str = "loss"
) -> NDArray:
    """Predicted ``theta_{-i} - theta`` for each listed point, shape (k, p)."""
    idx = check_indices(indices, adapter.n_train)
    if idx.size == 0:
        return np.zeros((0, adapter.n_params))
    G = adapter.train_grads(idx, total=train_gradient == "total")
    return backend.solve(G.T).T / adapter.n_train


def stationarity(adapter: Any, batch_size: int | None = None) -> tuple[float, float]:
    """``||grad J||`` and the scale it is judged against, at the fitted parameters.

    The scale is the root-mean-square per-sample gradient norm plus the norm
    of the penalty's gradient: the two terms that cancel at an optimum.
    """
    n, p = adapter.n_train, adapter.n_params
    sq = 0.0
    for t in chunks(n, chunk_size(p, batch_size)):
        sq += float(np.sum(adapter.train_grads(t) ** 2))
    penalty_grad = np.linalg.norm(adapter.penalty * adapter.params())
    scale = float(np.sqrt(sq / n) + penalty_grad)
    return float(np.linalg.norm(adapter.objective_grad())), scale


def optimum_error(adapter: Any, backend: Any, n_rows: int = 32) -> tuple[float, float]:
    """How far the fit is from the optimum, against the shifts influence predicts.

    One Newton step ``d = H^{-1} grad J`` is the distance to the optimum to
    first order; a removal moves the parameters by ``H^{-1} g_i / n``.  Both
    are measured in the ``H`` norm: ``sqrt(grad J^T d)`` against the
    root-mean-square ``sqrt(g_i^T H^{-1} g_i) / n`` over ``n_rows`` evenly
    spaced training rows.  A ratio above 1 says the fit is farther from its
    optimum than removing a typical point moves it: retraining differs from
    the model mostly by the unfinished optimisation, and the scores, taken at
    the wrong point, shift too (a few percent in the measured cases).  A
    relative gradient test (``||grad J||`` against the per-sample gradients)
    misses this when ``H`` is ill-conditioned (e.g.
    ``LogisticRegression(C=np.inf)`` at its default ``tol``).
    """
    gJ = np.asarray(adapter.objective_grad(), dtype=float).reshape(-1)
    d = np.asarray(backend.solve(gJ[:, None]), dtype=float).reshape(-1)
    n = adapter.n_train
    rows = np.unique(np.linspace(0, n - 1, min(n, n_rows)).astype(np.intp))
    G = np.asarray(adapter.train_grads(rows), dtype=float)
    Z = np.asarray(backend.solve(G.T), dtype=float)
    signal = float(np.sqrt(max(np.mean(np.sum(G.T * Z, axis=0)), 0.0))) / n
    return float(np.sqrt(max(float(gJ @ d), 0.0))), signal


def warn_if_not_stationary(
    grad_norm: float,
    grad_scale: float,
    step: float | None = None,
    signal: float | None = None,
) -> None:
    """Warn when the objective gradient is large relative to per-sample ones.

    An absolute floor keeps exact fits (all gradients ~ 0) quiet.  With
    ``step`` and ``signal`` (from :func:`optimum_error`) it also warns when the
    Newton step to the optimum exceeds ``NEWTON_STATIONARITY_RTOL`` times a
    typical removal shift: the results would be off by that fraction.
    """
    far = step is not None and signal is not None and grad_norm > STATIONARITY_ATOL
    far = far and step > NEWTON_STATIONARITY_RTOL * signal
    if far:
        warnings.warn(
            f"The fitted model is not at an optimum of its training objective: "
            f"one Newton step to the optimum ({step:.3g} in the curvature norm) is "
            f"{step / signal:.2g} times a typical leave-one-out parameter shift "
            f"({signal:.3g}), so retraining would move the model more by finishing "
            "the optimisation than by removing a point, and the scores are taken "
            "away from the optimum they assume. "
            "Tighten the model's tol (e.g. tol=1e-10) or raise max_iter. A frozen "
            "model fitted with sample_weight needs the same weights: pass "
            "sample_weight to fit.",
            NotAtOptimumWarning,
            stacklevel=3,
        )
    elif grad_norm > max(STATIONARITY_RTOL * grad_scale, STATIONARITY_ATOL):
        warnings.warn(
            f"The fitted model is not at an optimum of its training objective: "
            f"||grad J|| = {grad_norm:.3g} vs a gradient scale (per-sample and "
            f"penalty) of {grad_scale:.3g}. Influence assumes an optimum; tighten the "
            "model's tol or raise max_iter, and fit it on the same data. A frozen "
            "model fitted with sample_weight needs the same weights: pass "
            "sample_weight to fit.",
            NotAtOptimumWarning,
            stacklevel=3,
        )
