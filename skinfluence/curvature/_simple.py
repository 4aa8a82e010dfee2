"""Cheap curvature approximations: identity, diagonal, empirical Fisher."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg

from .._constants import AUTO_DAMPING_SCALE_EF
from ..utils._chunks import chunk_size, chunks, context_budget
from ..utils._linalg import check_dense_fits
from ._base import CurvatureBackend, DenseFactor, check_rhs, hessian_diagonal


class IdentityCurvature(CurvatureBackend):
    """``C = I``: influence becomes the gradient dot product (TracIn-style).

    ``solve(V) = V / (1 + damping)``.  Cheapest and crudest: it ignores how
    the loss curves, so scores rank by gradient alignment only.

    Attributes
    ----------
    mean_eigenvalue_ : float
        1.
    n_params_ : int
    damping_ : float

    References
    ----------
    Pruthi, G. et al. "Estimating Training Data Influence by Tracing Gradient
    Descent." NeurIPS 2020.
    """

    def _fit(self, adapter: Any) -> None:
        self.mean_eigenvalue_ = 1.0

    def _solve(self, V: NDArray) -> NDArray:
        return V / (1.0 + self.damping_)

    def solve_width(self, adapter: Any) -> int:
        """The solution only."""
        return int(adapter.n_params)

    def half_solve(self, V: NDArray) -> NDArray:
        """``V / sqrt(1 + damping)``.

        Parameters
        ----------
        V : ndarray of shape (n_params, k)

        Returns
        -------
        W : ndarray of shape (n_params, k)
        """
        return check_rhs(self, V) / np.sqrt(1.0 + self.damping_)


class DiagonalCurvature(CurvatureBackend):
    """``C = diag(H)``: each parameter's own curvature, no interactions.

    The diagonal is the adapter's closed form (linear models) or a
    Hutchinson estimate ``E[z * (H z)]`` with Rademacher probes.  Negative
    entries (a non-convex network) are replaced by their absolute values
    with a warning.

    Parameters
    ----------
    random_state : int, RandomState instance or None, default=None
        Probes of the Hutchinson estimate.

    Attributes
    ----------
    diagonal_ : ndarray of shape (n_params,)
    mean_eigenvalue_ : float
    n_params_ : int
    damping_ : float
    """

    _parameter_constraints: dict = {"random_state": ["random_state"]}

    def __init__(self, random_state: Any = None) -> None:
        self.random_state = random_state

    def _fit(self, adapter: Any) -> None:
        d = hessian_diagonal(adapter, self.random_state)
        if np.any(d < 0):
            warnings.warn(
                f"{np.sum(d < 0)} diagonal curvature entries are negative; using "
                "their absolute values.",
                UserWarning,
                stacklevel=4,
            )
            d = np.abs(d)
        self.diagonal_ = d
        self.mean_eigenvalue_ = float(np.mean(d))

    def _factorize(self) -> None:
        denom = self.diagonal_ + self.damping_
        if np.any(denom <= 0):
            raise ValueError(
                "The diagonal curvature has zero entries; add damping (e.g. 'auto')."
            )
        self._inv = 1.0 / denom

    def _solve(self, V: NDArray) -> NDArray:
        return self._inv[:, None] * V

    def solve_width(self, adapter: Any) -> int:
        """The solution only."""
        return int(adapter.n_params)

    def half_solve(self, V: NDArray) -> NDArray:
        """``diag(C + damping I)^{-1/2} V``.

        Parameters
        ----------
        V : ndarray of shape (n_params, k)

        Returns
        -------
        W : ndarray of shape (n_params, k)
        """
        return np.sqrt(self._inv)[:, None] * check_rhs(self, V)


class EFCurvature(CurvatureBackend):
    """Empirical Fisher / outer product: ``C = (1/n) sum_i g_i g_i^T + L2``.

    The mean outer product of the per-sample training gradients, plus the
    model's exact L2 term (and the projector onto flat directions).  Positive
    semi-definite and of rank at most ``n``, so it needs damping or a
    penalty.  Solved densely when ``n_params <= n_train``, else by the
    Woodbury identity in ``n x n``.  ``damping="auto"`` is 0.1 x the mean
    eigenvalue, DataInf's heuristic.

    Attributes
    ----------
    method_ : {"dense", "woodbury"}
    mean_eigenvalue_ : float
    n_params_ : int
    damping_ : float

    References
    ----------
    Koh, P. W. and Liang, P. ICML 2017 (outer-product approximation);
    Kwon, Y. et al. "DataInf." ICLR 2024 (damping heuristic).
    """

    _auto_damping_scale = AUTO_DAMPING_SCALE_EF

    def _fit(self, adapter: Any) -> None:
        n, p = adapter.n_train, adapter.n_params
        # the gradients (n x p), and the p x p matrix when solved densely
        # (checked against a budget the user set; none was checked before)
        if self.memory_budget_ is not None or context_budget() is not None:
            check_dense_fits(
                p,
                "empirical Fisher (the per-sample gradients)",
                shape=(n, p),
                budget=self.memory_budget_,
            )
            if p <= n:
                check_dense_fits(p, "empirical Fisher", budget=self.memory_budget_)
        G = np.empty((n, p))
        for t in chunks(n, chunk_size(p, budget=self.memory_budget_)):
            G[t] = adapter.train_grads(t)
        self._U = G.T / np.sqrt(n)  # (p, n): C = U U^T + diag(pen) + N N^T
        self._pen = np.asarray(adapter.penalty, dtype=np.float64)
        self._N = np.asarray(adapter.null_basis, dtype=np.float64).reshape(p, -1)
        self.mean_eigenvalue_ = float(
            (np.sum(G**2) / n + self._pen.sum() + self._N.shape[1]) / p
        )

    def _factorize(self) -> None:
        d = self._pen + self.damping_
        U = np.hstack([self._U, self._N])
        p, r = U.shape
        if p <= r or np.any(d <= 0):
            if np.any(d <= 0) and p > r:
                raise ValueError(
                    "The empirical Fisher has rank < n_params and some parameters "
                    "have no penalty; add damping (e.g. damping='auto')."
                )
            self.method_ = "dense"
            A = U @ U.T
            A[np.diag_indices_from(A)] += d
            self._factor = DenseFactor(A, 1e-10)
        else:
            self.method_ = "woodbury"
            self._dinv = 1.0 / d
            DU = self._dinv[:, None] * U
            small = np.eye(r) + U.T @ DU
            self._small = linalg.cho_factor(small, lower=True)
            self._DU = DU
        del self._U

    def solve_width(self, adapter: Any) -> int:
        """Dense: the solution and a copy; Woodbury: also ``n_train`` values."""
        p = int(adapter.n_params)
        return 2 * p + (int(adapter.n_train) if self.method_ == "woodbury" else 0)

    def _solve(self, V: NDArray) -> NDArray:
        if self.method_ == "dense":
            return self._factor.solve(V)
        DV = self._dinv[:, None] * V
        return DV - self._DU @ linalg.cho_solve(self._small, self._DU.T @ V)
