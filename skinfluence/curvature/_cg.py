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
    ``ConvergenceWarning`` naming the parameters to change.  A direction of
    non-positive curvature (the indefinite Hessian of a network trained by
    SGD or Adam, away from a minimum) stops that column there (truncated CG,
    as in Newton-CG) with a warning that names the indefinite Hessian and the
    positive semi-definite alternative, ``operator="ggn"``.
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

    def solve_width(self, adapter: Any) -> int:
        """Per column: ``X, R, P, A P`` and a gathered copy (``~6 n_params``),
        and the curvature product's per-sample outputs (``~2 n_train
        n_outputs`` for the linear adapters' products)."""
        p = int(adapter.n_params)
        return 6 * p + 2 * int(adapter.n_train) * int(adapter.n_outputs)

    def _matmat(self, V: NDArray) -> NDArray:
        return self.operator_.matmat(V) + self.damping_ * V

    def _solve(self, V: NDArray) -> NDArray:
        maxiter = self.maxiter or 2 * self.n_params_
        X, self.n_iter_, ok, negative = batched_cg(
            self._matmat,
            V,
            self.rtol,
            maxiter,
            verbose=self._verbose,
            truncate=True,
        )
        if np.any(negative):
            what = "Hessian" if self.operator == "hessian" else "Gauss-Newton matrix"
            fix = (
                "For a network, use the Gauss-Newton matrix, which is positive "
                "semi-definite: CGCurvature(operator='ggn') (curvature='auto' "
                "picks it for networks)"
                if self.operator == "hessian"
                else "Add damping"
            )
            warnings.warn(
                f"The {what} plus damping (damping={self.damping_:g}) is "
                f"indefinite: CG met a direction of non-positive curvature in "
                f"{int(np.sum(negative))} of {len(negative)} right-hand sides (a "
                "network away from a minimum, e.g. trained by SGD or Adam, has "
                "negative Hessian eigenvalues). Those solves stopped at the last "
                "iterate before it (truncated CG, as in Newton-CG), an "
                f"approximation of the inverse on the positive part. {fix}, or "
                "add damping.",
                UserWarning,
                stacklevel=3,
            )
            ok = ok | negative
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
    truncate: bool = False,
) -> tuple[NDArray, ...]:
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
    truncate : bool, default=False
        What a direction ``d`` of non-positive curvature ``d^T A d <= 0`` (an
        indefinite ``A``) does: ``False`` raises ``LinAlgError``; ``True``
        stops that column at its last iterate (truncated CG, Steihaug's rule
        in Newton-CG), or, when it meets one on its first iteration, at the
        step ``(b^T b / |b^T A b|) b`` along its right-hand side.

    Returns
    -------
    X : ndarray of shape (p, k)
    n_iter : int
    converged : ndarray of bool of shape (k,)
    negative : ndarray of bool of shape (k,)
        Columns stopped by non-positive curvature (only with ``truncate``).
    """
    if not np.all(np.isfinite(B)):
        raise ValueError("The right-hand sides contain NaN or infinity.")
    X = np.zeros_like(B)
    R = B.copy()
    P = R.copy()
    rs = np.einsum("ij,ij->j", R, R)
    target = (rtol**2) * rs
    active = ~(rs <= target)
    negative = np.zeros(B.shape[1], dtype=bool)
    first = np.ones(B.shape[1], dtype=bool)
    n_iter = 0
    for _ in progress(range(maxiter), desc="CG", verbose=verbose):
        if not np.any(active):
            break
        n_iter += 1
        idx = np.flatnonzero(active)
        AP = matmat(P[:, idx])
        curv = np.einsum("ij,ij->j", P[:, idx], AP)
        bad = curv <= 0
        if np.any(bad):
            if not truncate:
                raise np.linalg.LinAlgError(
                    "CG met a direction of non-positive curvature: the curvature "
                    "plus damping is not positive definite. Add damping or use "
                    "CGCurvature(operator='ggn')."
                )
            stop = idx[bad]
            start = stop[first[stop]]  # nothing solved yet: a Cauchy-type step
            size = np.abs(curv[bad][first[stop]])
            with np.errstate(divide="ignore", invalid="ignore"):
                step = np.where(size > 0, rs[start] / size, 0.0)
            X[:, start] = step * B[:, start]
            negative[stop] = True
            active[stop] = False
            idx, AP, curv = idx[~bad], AP[:, ~bad], curv[~bad]
            if len(idx) == 0:
                continue
        first[idx] = False
        alpha = rs[idx] / curv
        X[:, idx] += alpha * P[:, idx]
        R[:, idx] -= alpha * AP
        rs_new = np.einsum("ij,ij->j", R[:, idx], R[:, idx])
        P[:, idx] = R[:, idx] + (rs_new / rs[idx]) * P[:, idx]
        rs[idx] = rs_new
        if not np.all(np.isfinite(rs_new)):
            raise ValueError(
                "CG produced non-finite residuals: the curvature products or "
                "the gradients overflow. Check that the model's parameters and "
                "data are finite, add damping, or use curvature='exact'."
            )
        active[idx] = ~(rs_new <= target[idx])
    converged = ~active & ~negative
    if truncate:
        return X, n_iter, converged, negative
    return X, n_iter, converged
