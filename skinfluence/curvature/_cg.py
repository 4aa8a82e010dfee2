"""Matrix-free conjugate gradient curvature."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from ..utils._sklearn_compat import Interval
from ._base import CurvatureBackend


class CGCurvature(CurvatureBackend):
    """``(H + damping I)^{-1} V`` by conjugate gradient on Hessian products.

    Never forms ``H``: each iteration costs one Hessian-matrix product with
    the block of still-unconverged right-hand sides (a ``scipy``
    ``LinearOperator`` ``matmat`` from the model adapter).  All columns run in
    lockstep, each with its own step sizes, so ``k`` right-hand sides cost one
    BLAS-3 product per iteration instead of ``k`` matrix-vector products.

    Parameters
    ----------
    rtol : float, default=1e-8
        Stop a column when ``||r|| <= rtol * ||v||``.
    maxiter : int or None, default=None
        Iteration cap; ``None`` means ``2 * n_params``.

    Attributes
    ----------
    n_iter_ : int
        Iterations used by the most recent :meth:`solve`.
    n_params_ : int
    damping_ : float

    Notes
    -----
    scipy's ``scipy.sparse.linalg.cg`` solves one right-hand side per call;
    the batched form here is the same recurrence vectorised over columns.
    A column that has not converged after ``maxiter`` iterations raises a
    ``ConvergenceWarning`` naming the parameters to change.
    """

    _parameter_constraints: dict = {
        "rtol": [Interval(Real, 0, 1, closed="neither")],
        "maxiter": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, rtol: float = 1e-8, maxiter: int | None = None) -> None:
        self.rtol = rtol
        self.maxiter = maxiter

    def _fit(self, adapter: Any) -> None:
        self.operator_ = adapter.hessian_operator()

    def _matmat(self, V: NDArray) -> NDArray:
        return self.operator_.matmat(V) + self.damping_ * V

    def _solve(self, V: NDArray) -> NDArray:
        maxiter = self.maxiter or 2 * self.n_params_
        X, self.n_iter_, ok = batched_cg(self._matmat, V, self.rtol, maxiter)
        if not np.all(ok):
            warnings.warn(
                f"CG did not reach rtol={self.rtol:g} for {np.sum(~ok)} of "
                f"{len(ok)} right-hand sides within maxiter={maxiter}. Increase "
                "maxiter (curvature__maxiter), loosen rtol, or add damping.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return X


def batched_cg(
    matmat: Callable[[NDArray], NDArray], B: NDArray, rtol: float, maxiter: int
) -> tuple[NDArray, int, NDArray]:
    """Solve ``A X = B`` column by column with CG, all columns in lockstep.

    Parameters
    ----------
    matmat : callable
        ``V -> A V`` for a symmetric positive definite ``A``.
    B : ndarray of shape (p, k)
    rtol : float
    maxiter : int

    Returns
    -------
    X : ndarray of shape (p, k)
    n_iter : int
    converged : ndarray of bool of shape (k,)
    """
    X = np.zeros_like(B)
    R = B.copy()
    P = R.copy()
    rs = np.einsum("ij,ij->j", R, R)
    target = (rtol**2) * rs
    active = rs > target
    n_iter = 0
    while np.any(active) and n_iter < maxiter:
        idx = np.flatnonzero(active)
        AP = matmat(P[:, idx])
        curv = np.einsum("ij,ij->j", P[:, idx], AP)
        if np.any(curv <= 0):
            raise np.linalg.LinAlgError(
                "CG met a direction of non-positive curvature: H + damping*I is "
                "not positive definite. Add damping."
            )
        alpha = rs[idx] / curv
        X[:, idx] += alpha * P[:, idx]
        R[:, idx] -= alpha * AP
        rs_new = np.einsum("ij,ij->j", R[:, idx], R[:, idx])
        P[:, idx] = R[:, idx] + (rs_new / rs[idx]) * P[:, idx]
        rs[idx] = rs_new
        active[idx] = rs_new > target[idx]
        n_iter += 1
    return X, n_iter, ~active
