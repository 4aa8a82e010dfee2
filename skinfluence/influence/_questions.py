"""The other questions of the influence literature, on the same blocking.

All follow the library's orientation: a returned ``R`` predicts the change of
the measured quantity ``f_j`` when the training set is modified, times
``n_train`` (so ``R / n`` is the predicted change, as for removal scores).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._constants import AUTO_EXACT_MAX_PARAMS
from ..models import InputGradients, SubsetHessian, require
from ..utils._chunks import chunk_size, chunks
from ..utils._progress import progress
from ..utils._sklearn_compat import _num_samples, _safe_indexing
from ._core import _solve_block, query_grads


def _query_blocks(adapter, backend, Gq, batch_size, verbose, desc):
    """Yield ``(rows, Q)`` with ``Q = (H + damping I)^{-1} grad f`` (b, p)."""
    blocks = list(chunks(len(Gq), _solve_block(adapter, batch_size)))
    for q in progress(blocks, desc=desc, verbose=verbose):
        yield q, backend.solve(Gq[q].T).T


def input_perturbation(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    *,
    target: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """``R[j, i, :]``: shifting training input ``i`` by ``delta`` changes ``f_j``
    by about ``R[j, i] @ delta / n``; shape ``(m, n_train, *input_shape)``.

    ``R[j, i] = -(d g_i / d x_i)^T (H + damping I)^{-1} grad f_j`` (Koh & Liang's
    ``I_pert``, times ``n``).
    """
    require(
        adapter,
        InputGradients,
        purpose="input_perturbation",
        instead="use a scikit-learn linear model or a torch network",
    )
    Gq = query_grads(adapter, X, y, target)
    n = adapter.n_train
    out = None
    for q, Q in _query_blocks(
        adapter, backend, Gq, batch_size, verbose, "perturbation"
    ):
        for t in chunks(n, chunk_size(len(Q) * adapter.n_params, batch_size)):
            P = adapter.input_grad_products(Q, t)
            if out is None:
                out = np.empty((len(Gq), n, *P.shape[2:]))
            out[q, t] = -P
    return out


def label_change(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    *,
    target: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """``R[j, i, k]``: relabelling training point ``i`` to class ``k`` changes
    ``f_j`` by about ``R[j, i, k] / n``; shape (m, n_train, n_classes).

    ``R[j, i, k] = -grad f_j^T (H + damping I)^{-1} (g_{i,k} - g_i)`` with
    ``g_{i,k}`` the (class-weighted) gradient under label ``k``; zero for the
    current label.
    """
    if not adapter.is_classifier:
        raise ValueError("label_change needs a classifier.")
    Gq = query_grads(adapter, X, y, target)
    n, K = adapter.n_train, len(adapter.classes)
    out = np.empty((len(Gq), n, K))
    tsize = chunk_size(adapter.n_params * K, batch_size)
    for q, Q in _query_blocks(
        adapter, backend, Gq, batch_size, verbose, "label change"
    ):
        for t in chunks(n, tsize):
            base = adapter.train_grads(t) @ Q.T  # (b, m)
            for k in range(K):
                Gk = adapter.train_grads(t, labels=k)
                out[q, t, k] = -(Gk @ Q.T - base).T
    return out


def group_influence(
    adapter: Any,
    backend: Any,
    S: NDArray,
    groups: ArrayLike,
    *,
    method: str = "first_order",
    Gq: NDArray | None = None,
) -> tuple[NDArray, NDArray]:
    """Removal of whole groups: ``(R, group_labels)`` with R (m, n_groups).

    ``"first_order"``: the sum of the members' scores ``S`` (removal changes
    ``f_j`` by about ``R[j, g] / n``).  ``"newton"``: one Newton step on the
    objective without the group, ``Delta theta = (n H - H_G)^{-1} g_G`` with
    ``H_G`` the group's own summed Hessian -- the second-order correction that
    matters for large or coherent groups (Basu et al. 2020); dense, so only for
    adapters with a closed-form Hessian and up to 5000 parameters.
    """
    groups = np.asarray(groups)
    if groups.shape != (adapter.n_train,):
        raise ValueError(
            f"groups must have one label per training point ({adapter.n_train},); "
            f"got {groups.shape}."
        )
    labels, inverse = np.unique(groups, return_inverse=True)
    onehot = np.zeros((adapter.n_train, len(labels)))
    onehot[np.arange(adapter.n_train), inverse] = 1.0
    if method == "first_order":
        return S @ onehot, labels
    if method != "newton":
        raise ValueError(f"method must be 'first_order' or 'newton'; got {method!r}.")
    require(
        adapter,
        SubsetHessian,
        purpose="group_influence(method='newton')",
        instead="use method='first_order'",
    )
    if adapter.n_params > AUTO_EXACT_MAX_PARAMS:
        raise ValueError(
            "method='newton' needs a closed-form Hessian of at most "
            f"{AUTO_EXACT_MAX_PARAMS} parameters; use method='first_order'."
        )
    n = adapter.n_train
    H = adapter.hessian_matrix() + backend.damping_ * np.eye(adapter.n_params)
    R = np.empty((len(Gq), len(labels)))
    for g in range(len(labels)):
        rows = np.flatnonzero(inverse == g)
        gG = adapter.train_grads(rows).sum(axis=0)
        step = np.linalg.solve(n * H - adapter.data_hessian_sum(rows), gG)
        R[:, g] = n * (Gq @ step)
    return R, labels


def self_prediction_influence(
    adapter: Any,
    backend: Any,
    *,
    train_gradient: str = "loss",
    batch_size: int | None = None,
) -> NDArray:
    """``grad f_i^T (H + damping I)^{-1} g_i`` with ``f`` the prediction at
    training point ``i``: how removing it moves its own prediction; (n,)."""
    n = adapter.n_train
    out = np.empty(n)
    total = train_gradient == "total"
    for t in chunks(n, _solve_block(adapter, batch_size)):
        F = adapter.train_prediction_grads(t)
        G = adapter.train_grads(t, total=total)
        out[t] = np.einsum("ij,ji->i", F, backend.solve(G.T))
    return out


def mean_loss_solution(
    adapter: Any, backend: Any, X: ArrayLike, y: ArrayLike
) -> NDArray:
    """``(H + damping I)^{-1}`` times the gradient of the mean loss on ``(X, y)``.

    One solve, shape (p,): the product of any row's loss gradient with it is
    that row's influence on the mean loss of ``(X, y)`` (see
    :func:`influence_on_mean_loss` and its ``rows``).
    """
    g = np.zeros(adapter.n_params)
    m = len(np.asarray(y))
    for t in chunks(m, chunk_size(adapter.n_params)):
        g += adapter.loss_grads(_safe_indexing(X, t), np.asarray(y)[t]).sum(axis=0)
    return backend.solve(g / m)


def influence_on_mean_loss(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    y: ArrayLike,
    *,
    batch_size: int | None = None,
    solution: NDArray | None = None,
    rows: tuple[ArrayLike, ArrayLike] | None = None,
) -> NDArray:
    """``s_i``: removing training point ``i`` changes the mean loss on
    ``(X, y)`` by about ``s_i / n`` (one solve for the whole set); (n,).

    ``solution``: :func:`mean_loss_solution` of ``(X, y)`` when already
    computed (then ``X``, ``y`` are not read).  ``rows=(X_rows, y_rows)``:
    score those labelled rows (unit weight) instead of the training rows,
    shape (n_rows,): ``s`` is then how much adding the row would lower the
    mean loss, to first order, times ``n``.
    """
    q = mean_loss_solution(adapter, backend, X, y) if solution is None else solution
    p = adapter.n_params
    if rows is not None:
        Xr, yr = rows[0], np.asarray(rows[1])
        out = np.empty(_num_samples(Xr))
        for t in chunks(len(out), chunk_size(p, batch_size)):
            out[t] = adapter.loss_grads(_safe_indexing(Xr, t), yr[t]) @ q
        return out
    out = np.empty(adapter.n_train)
    for t in chunks(adapter.n_train, chunk_size(p, batch_size)):
        out[t] = adapter.train_grads(t) @ q
    return out


def label_change_on_mean_loss(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    y: ArrayLike,
    *,
    batch_size: int | None = None,
) -> NDArray:
    """``R[i, k]``: relabelling training point ``i`` to class ``k`` changes the
    mean loss on ``(X, y)`` by about ``R[i, k] / n``; shape (n, n_classes)."""
    if not adapter.is_classifier:
        raise ValueError("Relabelling needs a classifier.")
    q = mean_loss_solution(adapter, backend, X, y)
    K = len(adapter.classes)
    out = np.empty((adapter.n_train, K))
    for t in chunks(adapter.n_train, chunk_size(adapter.n_params * K, batch_size)):
        base = adapter.train_grads(t) @ q
        for k in range(K):
            out[t, k] = -(adapter.train_grads(t, labels=k) @ q - base)
    return out
