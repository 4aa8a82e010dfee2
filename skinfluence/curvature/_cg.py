"""Matrix-free conjugate gradient curvature."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from ..utils._progress import progress
from ..utils._sklearn_compat import Interval, StrOptions
from ._base import CurvatureBackend, ggn_diagonal, hessian_diagonal


class CGCurvature(CurvatureBackend):
    """``(C + damping I)^{-1} V`` by conjugate gradient on curvature products.

    Never forms ``C``: each iteration costs one curvature-matrix product with
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
    operator : {"hessian", "ggn"}, default="hessian"
        The curvature ``C``: the Hessian, or the Gauss-Newton matrix
        ``J^T H_out J`` (positive semi-definite; equal to the Hessian for
        linear models).

    Attributes
    ----------
    n_iter_ : int
        Iterations used by the most recent :meth:`solve`.
    mean_eigenvalue_ : float
        ``trace(C) / n_params`` (the adapter's exact diagonal, or a Hutchinson
        estimate when it has none).
    n_params_ : int
    damping_ : float

    Notes
    -----
    scipy's ``scipy.sparse.linalg.cg`` solves one right-hand side per call;
    the batched form here is the same recurrence vectorised over columns.
    A column that has not converged after ``maxiter`` iterations raises a
    ``ConvergenceWarning`` naming the parameters to change; a direction of
    non-positive curvature (an indefinite Hessian) raises an error.
    """

    _parameter_constraints: dict = {
        "rtol": [Interval(Real, 0, 1, closed="neither")],
        "maxiter": [Interval(Integral, 1, None, closed="left"), None],
        "operator": [StrOptions({"hessian", "ggn"})],
    }

    def __init__(
        self, rtol: float = 1e-8, maxiter: int | None = None, operator: str = "hessian"
    ) -> None:
        self.rtol = rtol
        self.maxiter = maxiter
        self.operator = operator

    def _fit(self, adapter: Any) -> None:
        if self.operator == "ggn":
            self.operator_ = adapter.ggn_operator()
            diag = ggn_diagonal(adapter)
        else:
            self.operator_ = adapter.hessian_operator()
            diag = hessian_diagonal(adapter)
        self.mean_eigenvalue_ = float(np.mean(diag))

    def _matmat(self, V: NDArray) -> NDArray:
        return self.operator_.matmat(V) + self.damping_ * V

    def _solve(self, V: NDArray) -> NDArray:
        maxiter = self.maxiter or 2 * self.n_params_
        X, self.n_iter_, ok = batched_cg(
            self._matmat, V, self.rtol, maxiter, verbose=self._verbose
        )
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
    matmat: Callable[[NDArray], NDArray],
    B: NDArray,
    rtol: float,
    maxiter: int,
    *,
    verbose: int = 0,
) -> tuple[NDArray, int, NDArray]:
    """Solve ``A X = B`` column by column with CG, all columns in lockstep.

    Parameters
    ----------
    matmat : callable
        ``V -> A V`` for a symmetric positive definite ``A``.
    B : ndarray of shape (p, k)
    rtol : float
    maxiter : int
    verbose : int, default=0
        Progress bar over iterations.

    Returns
    -------
    X : ndarray of shape (p, k)
    n_iter : int
    converged : ndarray of bool of shape (k,)
    """
    if not np.all(np.isfinite(B)):
        raise ValueError("The right-hand sides contain NaN or infinity.")
    X = np.zeros_like(B)
    R = B.copy()
    P = R.copy()
    rs = np.einsum("ij,ij->j", R, R)
    target = (rtol**2) * rs
    active = ~(rs <= target)
    n_iter = 0
    for _ in progress(range(maxiter), desc="CG", verbose=verbose):
        if not np.any(active):
            break
        n_iter += 1
        idx = np.flatnonzero(active)
        AP = matmat(P[:, idx])
        curv = np.einsum("ij,ij->j", P[:, idx], AP)
        if np.any(curv <= 0):
            raise np.linalg.LinAlgError(
                "CG met a direction of non-positive curvature: the curvature plus "
                "damping is not positive definite. Add damping or use "
                "CGCurvature(operator='ggn')."
            )
        alpha = rs[idx] / curv
        X[:, idx] += alpha * P[:, idx]
        R[:, idx] -= alpha * AP
        rs_new = np.einsum("ij,ij->j", R[:, idx], R[:, idx])
        P[:, idx] = R[:, idx] + (rs_new / rs[idx]) * P[:, idx]
        rs[idx] = rs_new
        if not np.all(np.isfinite(rs_new)):
            raise FloatingPointError("CG produced non-finite residuals.")
        active[idx] = ~(rs_new <= target[idx])
    return X, n_iter, ~active
