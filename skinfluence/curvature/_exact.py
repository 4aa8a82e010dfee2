"""Dense exact curvature: Cholesky, with an eigen pseudo-inverse fallback."""

from __future__ import annotations

import warnings
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg

from ..utils._sklearn_compat import Interval
from ._base import CurvatureBackend


class ExactCurvature(CurvatureBackend):
    """Exact ``(H + damping I)^{-1}`` from the dense ``p x p`` Hessian.

    The matrix is factorised once by Cholesky; solves are two triangular
    solves.  When ``H + damping I`` is not positive definite (a rank-deficient
    design with no penalty, or a non-convex model) the backend warns and falls
    back to the eigen pseudo-inverse: eigenvalues below ``rcond * max |eig|``
    get an inverse of 0.

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
    n_params_ : int
    damping_ : float

    Notes
    -----
    Memory is ``p^2`` floats; for large ``p`` prefer ``"cg"``.
    """

    _parameter_constraints: dict = {"rcond": [Interval(Real, 0, 1, closed="both")]}

    def __init__(self, rcond: float = 1e-10) -> None:
        self.rcond = rcond

    def _fit(self, adapter: Any) -> None:
        H = _dense_hessian(adapter)
        H[np.diag_indices_from(H)] += self.damping_
        self.min_eigenvalue_ = None
        try:
            self._factor = linalg.cho_factor(H, lower=True, check_finite=True)
            self.method_ = "cholesky"
        except linalg.LinAlgError:
            w, Q = linalg.eigh(H)
            self.min_eigenvalue_ = float(w[0])
            cutoff = self.rcond * max(abs(w[0]), abs(w[-1]))
            inv = np.where(w > cutoff, 1.0 / np.where(w > cutoff, w, 1.0), 0.0)
            self._factor = (Q, inv)
            self.method_ = "eigen"
            warnings.warn(
                "The curvature H + damping*I is not positive definite (smallest "
                f"eigenvalue {w[0]:.3g}, damping={self.damping_:g}); using the "
                f"eigen pseudo-inverse over eigenvalues > {cutoff:.3g}. Add "
                "damping (e.g. damping=1e-3), a penalty on the model, or remove "
                "collinear features.",
                UserWarning,
                stacklevel=3,
            )

    def _solve(self, V: NDArray) -> NDArray:
        if self.method_ == "cholesky":
            return linalg.cho_solve(self._factor, V, check_finite=False)
        Q, inv = self._factor
        return Q @ (inv[:, None] * (Q.T @ V))


def _dense_hessian(adapter: Any) -> NDArray:
    """The adapter's closed-form Hessian, or one assembled from its products."""
    if hasattr(adapter, "hessian_matrix"):
        return np.array(adapter.hessian_matrix(), dtype=np.float64)
    op = adapter.hessian_operator()
    H = op.matmat(np.eye(adapter.n_params))
    return 0.5 * (H + H.T)
