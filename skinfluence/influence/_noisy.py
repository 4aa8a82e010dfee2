"""Scores for noisy-label detection beyond Koh & Liang's self-influence.

* VM/FVM (Ye et al. 2025): at a (flat) minimum ``theta~`` of the validation
  loss, ``s_i = g~_i^T (H~_val + damping I)^{-1} g~_i`` with ``g~_i`` the
  training point's loss gradient at ``theta~`` and ``H~_val`` any curvature
  backend fitted on the validation adapter.  It is the second-order change
  of the validation loss when point ``i`` is up-weighted from there (the
  first-order term vanishes at the minimum), up to ``eps^2 / 2``.  Higher =
  more harmful.  For relabelling, the same form for every candidate label.
* TracIn (Pruthi et al. 2020): ``sum_k lr_k ||grad loss_i(theta_k)||^2`` over
  saved checkpoints (self-influence), and the pairwise TracInCP score
  ``sum_k lr_k grad f_j(theta_k)^T grad loss_i(theta_k)`` of query rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..models import TrainingCheckpoints, require
from ..utils._chunks import chunk_size, chunks
from ..utils._progress import progress
from ..utils._sklearn_compat import _num_samples, _safe_indexing
from ._core import TARGETS, _solve_block, query_grads


def _quadratic_forms(backend: Any, G: NDArray) -> NDArray:
    return np.einsum("ij,ji->i", G, backend.solve(G.T))


def validation_minimum_scores(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    y: ArrayLike,
    *,
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """``g~_i^T (C + damping I)^{-1} g~_i`` for the rows of ``(X, y)``, shape (m,).

    Parameters
    ----------
    adapter : ModelAdapter
        The model at the validation minimum (its training set is the
        validation set, e.g. from :meth:`Finetuner.run`).
    backend : CurvatureBackend
        Fitted on ``adapter``: ``C`` is the validation curvature.
    X, y : array-like
        The training points to score (inputs as the whole model takes them).
    batch_size : int or None, default=None
        Rows per solve.
    verbose : int, default=0
        Progress bar when positive.

    Returns
    -------
    scores : ndarray of shape (m,)
        Non-negative for a positive semi-definite ``C``; higher = more harmful.
    """
    y = np.asarray(y)
    out = np.empty(len(y))
    blocks = list(chunks(len(y), _solve_block(adapter, batch_size)))
    for t in progress(blocks, desc="VM/FVM scores", verbose=verbose):
        G = adapter.loss_grads(_safe_indexing(X, t), y[t])
        out[t] = _quadratic_forms(backend, G)
    return out


def validation_minimum_label_scores(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    *,
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """The VM/FVM score of ``(x_i, c)`` for every class ``c``, shape (m, K).

    The relabelling rule of the FVM paper takes, per point, the label with
    the lowest score (the label whose up-weighting would disturb the
    validation minimum least), the current label included.
    """
    if not adapter.is_classifier:
        raise ValueError("Relabelling needs a classifier.")
    classes = np.asarray(adapter.classes)
    m = _num_samples(X)
    out = np.empty((m, len(classes)))
    size = _solve_block(adapter, batch_size)
    blocks = [(t, k) for t in chunks(m, size) for k in range(len(classes))]
    for t, k in progress(blocks, desc="VM/FVM label scores", verbose=verbose):
        rows = _safe_indexing(X, t)
        labels = np.full(_num_samples(rows), classes[k])
        out[t, k] = _quadratic_forms(backend, adapter.loss_grads(rows, labels))
    return out


def tracin_self_influence(
    adapter: Any,
    X: ArrayLike | None = None,
    y: ArrayLike | None = None,
    *,
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """TracInCP self-influence ``sum_k lr_k ||grad loss_i(theta_k)||^2``.

    Parameters
    ----------
    adapter : ModelAdapter
        With the :class:`~skinfluence.models.TrainingCheckpoints` capability:
        ``checkpoints``, a list of ``(theta_k, lr_k)``, and ``with_params``.
    X, y : array-like or None, default=None
        Rows to score (a fresh labelled batch); ``None``: the training rows.
    batch_size : int or None, default=None
        Rows per gradient chunk.
    verbose : int, default=0
        Progress bar over checkpoints when positive.

    Returns
    -------
    scores : ndarray of shape (n_train,) or (n_rows,)
    """
    checkpoints = _checkpoints(adapter)
    p = adapter.n_params
    n = adapter.n_train if X is None else _num_samples(X)
    out = np.zeros(n)
    for theta, lr in progress(checkpoints, desc="TracIn", verbose=verbose):
        at = adapter.with_params(theta)
        for t in chunks(n, chunk_size(p, batch_size)):
            if X is None:
                G = at.train_grads(t)
            else:
                G = at.loss_grads(_safe_indexing(X, t), np.asarray(y)[t])
            out[t] += lr * np.sum(G**2, axis=1)
    return out


def _checkpoints(adapter: Any) -> list:
    """The adapter's ``(theta_k, lr_k)``, or a refusal that says how to save them."""
    require(
        adapter,
        TrainingCheckpoints,
        purpose="method='tracin'",
        instead=(
            "fit a skorch net with the skinfluence.TracInCheckpoints() callback, "
            "or use method='self_influence'"
        ),
    )
    checkpoints = adapter.checkpoints
    if not checkpoints:
        raise ValueError(
            "TracIn needs training checkpoints: fit a skorch net with the "
            "skinfluence.TracInCheckpoints() callback. This model has none (closed-"
            "form and L-BFGS fits have no trajectory to trace)."
        )
    return checkpoints


def tracin_pairwise(
    adapter: Any,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    target: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """Pairwise TracInCP over saved checkpoints, shape (n_query, n_train).

    ``S[j, i] = sum_k lr_k grad f_j(theta_k)^T grad loss_i(theta_k)``: the
    first-order change of the query's ``f_j`` from the gradient steps that
    training point ``i`` took, summed over the checkpoints ``theta_k`` with
    the learning rates ``lr_k`` they were trained with (Pruthi et al. 2020).
    Positive means ``i`` is a proponent of ``j`` (it lowered ``j``'s loss),
    the sign of :func:`pairwise_influence`; the scale is that of the
    trajectory (the learning rates), not of removing a point.

    Parameters
    ----------
    adapter : ModelAdapter
        With the :class:`~skinfluence.models.TrainingCheckpoints` capability
        (a skorch net fitted with the
        :class:`~skinfluence.TracInCheckpoints` callback).
    X : array-like of shape (n_query, ...)
        Query inputs, as the whole model takes them.
    y : array-like of shape (n_query,) or None, default=None
        Query targets; required for ``target="loss"``.
    target : {"loss", "prediction"}, default="loss"
        The measured quantity ``f`` (see :func:`query_grads`).
    batch_size : int or None, default=None
        Rows per gradient block, on each side; ``None`` fits the memory
        budget.
    verbose : int, default=0
        Progress bar over checkpoints when positive.

    Returns
    -------
    S : ndarray of shape (n_query, n_train)
        Indexed by the adapter's training rows; for the training set itself
        as the query, ``diag(S)`` is :func:`tracin_self_influence`.

    References
    ----------
    Pruthi, G., Liu, F., Kale, S. and Sundararajan, M. "Estimating Training
    Data Influence by Tracing Gradient Descent." NeurIPS 2020.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")
    if target == "loss" and y is None:
        raise ValueError("target='loss' needs y; pass y or use target='prediction'.")
    checkpoints = _checkpoints(adapter)
    y = None if y is None else np.asarray(y)
    m, n, p = _num_samples(X), adapter.n_train, adapter.n_params
    size = chunk_size(p, batch_size)
    S = np.zeros((m, n))
    for theta, lr in progress(checkpoints, desc="TracIn", verbose=verbose):
        at = adapter.with_params(theta)
        for q in chunks(m, size):
            yq = None if y is None else y[q]
            Gq = query_grads(at, _safe_indexing(X, q), yq, target)
            for t in chunks(n, size):
                S[q, t] += lr * (Gq @ at.train_grads(t).T)
    return S
