"""Dense exact curvature: Cholesky, with an eigen pseudo-inverse fallback."""

from __future__ import annotations

import warnings
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..utils._linalg import check_dense_fits
from ..utils._sklearn_compat import Interval
from ._base import CurvatureBackend, DenseFactor, check_rhs, hessian_matrix


class ExactCurvature(CurvatureBackend):
    """Exact ``(H + damping I)^{-1}`` from the dense ``p x p`` Hessian.

    The Hessian comes from the adapter's closed form when it has one (linear
    models) and is otherwise assembled from Hessian-vector products in column
    chunks.  It is factorised once by Cholesky; solves are two triangular
    solves.  When ``H + damping I`` is not positive definite (a rank-deficient
    design with no penalty, or a non-convex network) the backend warns and
    falls back to the eigen pseudo-inverse: eigenvalues below
    ``rcond * max |eig|`` get an inverse of 0.  For networks, damping or the
    ``"ggn"`` backend are the better remedies.

    Parameters
    ----------
    rcond : float, default=1e-10
        Relative eigenvalue cut-off of the pseudo-inverse fallback.

    Attributes
    ----------
    method_ : {"cholesky", "eigen"}
        The factorisation in use.
    min_eigenvalue_ : float or None
        Smallest eigenvalue of ``H + damping I`` when the fallback ran.
    mean_eigenvalue_ : float
        ``trace(H) / n_params``.
    n_params_ : int
    damping_ : float

    Notes
    -----
    Memory is ``p^2`` floats (the factor), held twice for a moment while it
    is factorised; over the memory budget (``fit``'s ``memory_budget``;
    by default ``DENSE_MEMORY_BUDGET_BYTES``, 1 GiB, about 11,500
    parameters) ``fit`` refuses before allocating and names the matrix-free
    backends (``"cg"``, ``"ekfac"``).  :meth:`half_solve` applies ``L^{-1}``
    (one triangular solve), so ``g^T (H + damping I)^{-1} g = ||L^{-1}
    g||^2``.
    """

    _parameter_constraints: dict = {"rcond": [Interval(Real, 0, 1, closed="both")]}

    def __init__(self, rcond: float = 1e-10) -> None:
        self.rcond = rcond

    def _curvature_matrix(self, adapter: Any) -> NDArray:
        return hessian_matrix(adapter, self.memory_budget_)

    def _fit(self, adapter: Any) -> None:
        # refused before the closed form or the assembly allocates anything
        check_dense_fits(
            adapter.n_params,
            f"{type(self).__name__} curvature",
            budget=self.memory_budget_,
        )
        self._H = self._curvature_matrix(adapter)
        self.mean_eigenvalue_ = float(np.trace(self._H) / self.n_params_)

    def _factorize(self) -> None:
        A = self._H  # owned here (a copy of the adapter's): damped in place
        A[np.diag_indices_from(A)] += self.damping_
        self._factor = DenseFactor(A, self.rcond)
        self.method_ = self._factor.method
        self.min_eigenvalue_ = self._factor.min_eigenvalue
        del self._H
        if self.method_ == "eigen":
            warnings.warn(
                "The curvature H + damping*I is not positive definite (smallest "
                f"eigenvalue {self.min_eigenvalue_:.3g}, damping={self.damping_:g}); "
                f"using the eigen pseudo-inverse over eigenvalues > "
                f"{self._factor.cutoff:.3g}. Add damping (e.g. damping=1e-3 or "
                "'auto'), use curvature='ggn' for a network, add a penalty to the "
                "model, or remove collinear features.",
                UserWarning,
                stacklevel=4,
            )

    def _solve(self, V: NDArray) -> NDArray:
        return self._factor.solve(V)

    def solve_width(self, adapter: Any) -> int:
        """A stored factor: the solution and one copy of ``V`` per column."""
        return 2 * int(adapter.n_params)

    def half_solve(self, V: NDArray) -> NDArray:
        """``W = L^{-1} V`` for the Cholesky factor ``L`` (``W^T W = V^T (H +
        damping I)^{-1} V``); ``diag(inv)^{1/2} Q^T V`` for the eigen fallback.

        Parameters
        ----------
        V : ndarray of shape (n_params, k)

        Returns
        -------
        W : ndarray of shape (n_params, k)
        """
        return self._factor.half_solve(check_rhs(self, V))
