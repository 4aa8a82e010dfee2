"""Low-rank curvature from the top eigenpairs (Lanczos)."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh
from sklearn.utils import check_random_state

from ..utils._chunks import context_budget
from ..utils._linalg import check_dense_fits
from ..utils._sklearn_compat import Interval
from ._base import CurvatureBackend, check_rhs, hessian_diagonal


class LowRankCurvature(CurvatureBackend):
    """``C = Q diag(lambda) Q^T`` from the ``rank`` largest eigenpairs of ``H``.

    Eigenpairs by implicitly restarted Lanczos on Hessian-vector products
    (``scipy.sparse.linalg.eigsh``).  The solve inverts exactly on the top
    eigenspace and by ``1/damping`` on its complement (Woodbury on
    ``Q diag(lambda) Q^T + damping I``)::

        solve(V) = Q diag(1 / (lambda + damping)) Q^T V
                   + (V - Q Q^T V) / damping          (damping > 0)

    With ``damping=0`` the complement is dropped (the pseudo-inverse of the
    low-rank matrix), so only the top directions carry influence.

    Parameters
    ----------
    rank : int, default=50
        Number of eigenpairs (capped at ``n_params``).
    random_state : int, RandomState instance or None, default=None
        Lanczos start vector.

    Attributes
    ----------
    eigenvalues_ : ndarray of shape (rank,)
    eigenvectors_ : ndarray of shape (n_params, rank)
    mean_eigenvalue_ : float
    n_params_ : int
    damping_ : float

    References
    ----------
    Schioppa, A. et al. "Scaling up influence functions." AAAI 2022.
    """

    _parameter_constraints: dict = {
        "rank": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, rank: int = 50, random_state: Any = None) -> None:
        self.rank = rank
        self.random_state = random_state

    def _fit(self, adapter: Any) -> None:
        p = adapter.n_params
        op = adapter.hessian_operator()
        k = min(self.rank, p)
        if self.memory_budget_ is not None or context_budget() is not None:
            # Lanczos keeps 2k + 1 vectors of p (scipy's default ncv)
            check_dense_fits(
                p,
                "low-rank curvature's Lanczos basis",
                shape=(p, min(2 * k + 1, p)),
                budget=self.memory_budget_,
            )
        if k >= p - 1:
            check_dense_fits(
                p, "low-rank curvature (rank >= p - 1)", budget=self.memory_budget_
            )
            w, Q = eigh(op.matmat(np.eye(p)))
            w, Q = w[-k:], Q[:, -k:]
        else:
            v0 = check_random_state(self.random_state).standard_normal(p)
            w, Q = eigsh(op, k=k, which="LA", v0=v0)
        self.eigenvalues_, self.eigenvectors_ = w, Q
        self.mean_eigenvalue_ = float(np.mean(hessian_diagonal(adapter)))

    def _factorize(self) -> None:
        denom = self.eigenvalues_ + self.damping_
        if np.any(denom <= 0):
            raise ValueError(
                "A kept eigenvalue plus damping is not positive; add damping."
            )
        self._inv = 1.0 / denom

    def solve_width(self, adapter: Any) -> int:
        """``Q^T V`` and the solution: ``rank + 2 p`` values per column."""
        return int(self.eigenvectors_.shape[1]) + 2 * int(adapter.n_params)

    def half_solve(self, V: NDArray) -> NDArray:
        """``W`` with ``W^T W = V^T (Q diag(lambda) Q^T + damping I)^{-1} V``.

        ``[diag(lambda + damping)^{-1/2} Q^T V ; (V - Q Q^T V) / sqrt(damping)]``
        (the second part only with damping > 0), of ``rank (+ n_params)`` rows.

        Parameters
        ----------
        V : ndarray of shape (n_params, k)

        Returns
        -------
        W : ndarray of shape (rank or rank + n_params, k)
        """
        V = check_rhs(self, V)
        Q = self.eigenvectors_
        QtV = Q.T @ V
        top = np.sqrt(self._inv)[:, None] * QtV
        if self.damping_ <= 0:
            return top
        return np.vstack([top, (V - Q @ QtV) / np.sqrt(self.damping_)])

    def _solve(self, V: NDArray) -> NDArray:
        Q = self.eigenvectors_
        QtV = Q.T @ V
        out = Q @ (self._inv[:, None] * QtV)
        if self.damping_ > 0:
            out += (V - Q @ QtV) / self.damping_
        return out
