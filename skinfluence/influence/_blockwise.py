"""Influence from row blocks: the pieces a cluster computes, one block each.

A training set too large for one machine is scored in row blocks, each with
its own adapter (the same fitted model, the block's rows, and the whole set's
``n`` as the objective's; see ``n_objective`` of
:class:`~skinfluence.models.LinearAdapter`).  What a block contributes to the
curvature is additive -- its summed data Hessian, its summed gradient, its
row count -- and what it gets back is one factor of ``H + damping I``,
small enough (``p x p``) to ship to every worker once.

Everything here is plain numpy on one block; which scheduler runs it (Dask,
joblib, a loop) is the caller's business.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg

#: Bytes of per-row gradients held at once inside one block (sub-blocks).
_BLOCK_BYTES = 256 * 2**20


@dataclass
class BlockStatistics:
    """What one row block adds to the training objective's curvature.

    Attributes
    ----------
    hessian_sum : ndarray of shape (n_params, n_params)
        ``sum_i w_i Hessian(loss_i)`` over the block (no penalty).
    gradient_sum : ndarray of shape (n_params,)
        ``sum_i w_i grad loss_i`` over the block (no penalty).
    gradient_sq : float
        ``sum_i ||w_i grad loss_i||^2``, for the stationarity scale.
    n_rows : int
        Rows in the block.
    """

    hessian_sum: NDArray
    gradient_sum: NDArray
    gradient_sq: float
    n_rows: int

    def __add__(self, other: BlockStatistics) -> BlockStatistics:
        return BlockStatistics(
            self.hessian_sum + other.hessian_sum,
            self.gradient_sum + other.gradient_sum,
            self.gradient_sq + other.gradient_sq,
            self.n_rows + other.n_rows,
        )


def _sub_blocks(n: int, width: int, memory_budget: int | None) -> list[slice]:
    """Row slices whose ``(rows, width)`` float64 gradients fit the budget."""
    budget = _BLOCK_BYTES if memory_budget is None else int(memory_budget)
    rows = max(1, budget // (8 * max(int(width), 1)))
    return [slice(s, min(s + rows, n)) for s in range(0, n, rows)] or [slice(0, 0)]


def block_statistics(adapter: Any, *, memory_budget: int | None = None) -> Any:
    """The block's summed data Hessian, summed gradient and row count.

    Parameters
    ----------
    adapter : ModelAdapter with the SubsetHessian capability
        The fitted model on the block's rows.
    memory_budget : int or None, default=None
        Bytes of per-row gradients held at once (the block is walked in
        sub-blocks); ``None``: 256 MiB.

    Returns
    -------
    stats : BlockStatistics
        Additive: ``sum(stats)`` over the blocks is the whole set's.
    """
    p, n = adapter.n_params, adapter.n_train
    g = np.zeros(p)
    sq = 0.0
    for rows in _sub_blocks(n, p, memory_budget):
        G = np.asarray(adapter.train_grads(rows), dtype=np.float64)
        g += G.sum(axis=0)
        sq += float(np.sum(G * G))
    H = np.asarray(adapter.data_hessian_sum(), dtype=np.float64)
    return BlockStatistics(H, g, sq, int(n))


class CurvatureFactor:
    """A factor ``M`` of ``(H + damping I)^{-1} = M^T M``, cheap to ship.

    Cholesky ``A = L L^T`` gives ``M = L^{-1}`` (one triangular solve per
    application); when ``A`` is not positive definite the eigen
    pseudo-inverse ``Q diag(1/w) Q^T`` over eigenvalues above
    ``rcond * max |w|`` gives ``M = diag(w^{-1/2}) Q^T`` (with a warning, as
    the ``"exact"`` curvature backend).

    Parameters
    ----------
    A : ndarray of shape (p, p)
        ``H + damping I``, symmetric.
    damping : float
        The damping in ``A``, named in the warning.
    rcond : float, default=1e-10
        Relative eigenvalue cut-off of the pseudo-inverse.

    Attributes
    ----------
    method : {"cholesky", "eigen"}
    min_eigenvalue : float or None
        Smallest eigenvalue of ``A`` when the fallback ran.
    n_params : int
    """

    def __init__(self, A: NDArray, damping: float, rcond: float = 1e-10) -> None:
        A = np.asarray(A, dtype=np.float64)
        self.n_params = A.shape[0]
        self.min_eigenvalue = None
        try:
            self._L = linalg.cholesky(A, lower=True, check_finite=True)
            self.method = "cholesky"
        except linalg.LinAlgError:
            w, Q = linalg.eigh(A)
            self.min_eigenvalue = float(w[0])
            cutoff = rcond * max(abs(w[0]), abs(w[-1]))
            keep = w > cutoff
            inv_sqrt = np.where(keep, 1.0 / np.sqrt(np.where(keep, w, 1.0)), 0.0)
            self._M = inv_sqrt[:, None] * Q.T
            self.method = "eigen"
            warnings.warn(
                "The curvature H + damping*I is not positive definite (smallest "
                f"eigenvalue {self.min_eigenvalue:.3g}, damping={damping:g}); "
                f"using the eigen pseudo-inverse over eigenvalues > {cutoff:.3g}. "
                "Add damping (e.g. damping=1e-3 or 'auto'), add a penalty to the "
                "model, or remove collinear features.",
                UserWarning,
                stacklevel=3,
            )

    def half_solve(self, V: NDArray) -> NDArray:
        """``M V`` for ``V`` of shape (p, k): ``(M V)^T (M V) = V^T A^{-1} V``."""
        if self.method == "cholesky":
            return linalg.solve_triangular(self._L, V, lower=True, check_finite=False)
        return self._M @ V

    def solve(self, V: NDArray) -> NDArray:
        """``A^{-1} V`` for ``V`` of shape (p, k) or (p,)."""
        V = np.asarray(V, dtype=np.float64)
        if self.method == "cholesky":
            return linalg.cho_solve((self._L, True), V, check_finite=False)
        return self._M.T @ (self._M @ V)


def curvature_factor(
    stats: BlockStatistics,
    penalty: NDArray,
    null_basis: NDArray,
    *,
    n_objective: int,
    damping: float | str = 0.0,
    auto_scale: float = 1e-3,
) -> tuple[CurvatureFactor, float]:
    """Factor ``H + damping I`` from the reduced block statistics.

    ``H = hessian_sum / n_objective + diag(penalty) + N N^T`` (``N`` the flat
    directions of a symmetric parametrisation), exactly the dense Hessian an
    adapter on the whole set gives.

    Parameters
    ----------
    stats : BlockStatistics
        The sum over every block.
    penalty : ndarray of shape (p,)
        The whole set's penalty (at the global ``n``).
    null_basis : ndarray of shape (p, k)
    n_objective : int
        The ``n`` of the objective.
    damping : float or "auto", default=0.0
        ``"auto"``: ``auto_scale`` times the mean eigenvalue of ``H``.
    auto_scale : float, default=1e-3

    Returns
    -------
    factor : CurvatureFactor
    damping : float
        The damping used.
    """
    H = stats.hessian_sum / n_objective
    H[np.diag_indices_from(H)] += penalty
    if null_basis.shape[1]:
        H += null_basis @ null_basis.T
    H = 0.5 * (H + H.T)
    if damping == "auto":
        damping = float(auto_scale * np.trace(H) / H.shape[0])
    damping = float(damping)
    H[np.diag_indices_from(H)] += damping
    return CurvatureFactor(H, damping), damping


def objective_gradient(
    stats: BlockStatistics, penalty: NDArray, theta: NDArray, null_basis: NDArray
) -> tuple[NDArray, float]:
    """``grad J`` off the flat directions, and the scale it is judged against.

    The scale is the root-mean-square per-sample gradient norm plus the norm
    of the penalty's gradient (as :func:`skinfluence.influence.stationarity`).
    """
    n = stats.n_rows
    g = stats.gradient_sum / n + penalty * theta
    if null_basis.shape[1]:
        g = g - null_basis @ (null_basis.T @ g)
    scale = float(np.sqrt(stats.gradient_sq / n) + np.linalg.norm(penalty * theta))
    return g, scale


def newton_step(factor: CurvatureFactor, grad: NDArray) -> float:
    """``sqrt(grad J^T (H + damping I)^{-1} grad J)``: the distance to the
    optimum in the curvature norm, to first order."""
    return float(np.linalg.norm(factor.half_solve(np.asarray(grad)[:, None])))


def block_self_influence(
    adapter: Any,
    factor: CurvatureFactor,
    *,
    train_gradient: str = "loss",
    memory_budget: int | None = None,
) -> NDArray:
    """``g_i^T (H + damping I)^{-1} g_i`` for the block's rows, shape (b,).

    One triangular solve per sub-block: ``||M g_i||^2``.  With
    ``train_gradient="total"`` the right factor is the total gradient
    (``(M g_i)^T (M g~_i)``), as :func:`skinfluence.influence.self_influence`.
    """
    n, p = adapter.n_train, adapter.n_params
    out = np.empty(n)
    for rows in _sub_blocks(n, 2 * p, memory_budget):
        Z = factor.half_solve(np.asarray(adapter.train_grads(rows)).T)
        if train_gradient == "total":
            Zt = factor.half_solve(np.asarray(adapter.train_grads(rows, total=True)).T)
            out[rows] = np.einsum("ji,ji->i", Z, Zt)
        else:
            out[rows] = np.einsum("ji,ji->i", Z, Z)
    return out


def block_influence(
    adapter: Any,
    Qinv: NDArray,
    *,
    train_gradient: str = "loss",
    memory_budget: int | None = None,
) -> NDArray:
    """Scores ``(G @ Qinv).T`` of the block's rows, shape (m, b).

    ``Qinv = (H + damping I)^{-1} grad f^T`` of shape (p, m): the
    preconditioned query gradients, solved once for every block.
    """
    n, p = adapter.n_train, adapter.n_params
    total = train_gradient == "total"
    S = np.empty((Qinv.shape[1], n))
    for rows in _sub_blocks(n, p, memory_budget):
        S[:, rows] = (np.asarray(adapter.train_grads(rows, total=total)) @ Qinv).T
    return S
