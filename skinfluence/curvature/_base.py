"""The curvature backend interface: fit once, then solve blocks."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg
from scipy.sparse.linalg import LinearOperator
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._constants import AUTO_DAMPING_SCALE
from ..models import DenseCurvature, GGNDiagonal, HessianDiagonal
from ..utils._linalg import dense_from_matmat, hutchinson_diagonal


class CurvatureBackend(BaseEstimator, metaclass=ABCMeta):
    """Apply ``(C + damping I)^{-1}`` to blocks ``V`` of shape (n_params, k).

    ``C`` is the backend's curvature of the training objective as the model
    adapter defines it (the Hessian, including the L2 term and, for symmetric
    parametrisations, the projector onto the flat directions; or an
    approximation of it).  Subclasses write ``_fit`` (damping-independent
    work, and ``mean_eigenvalue_``), optionally ``_factorize`` (work that
    depends on ``damping_``) and ``_solve``.

    ``damping="auto"`` resolves to ``_auto_damping_scale * mean_eigenvalue_``
    once the curvature is known.

    Memory: ``fit`` takes the caller's ``memory_budget`` (bytes, ``None``
    for the library defaults) as ``memory_budget_``; a backend that
    allocates something dense checks it first and refuses, naming the
    budget and a backend that fits.  :meth:`solve_width` says how many
    float64 values one right-hand side of :meth:`solve` costs in
    temporaries, so callers size their blocks to the path actually taken.

    Optional: ``half_solve(V)`` returning ``W`` with ``W^T W = V^T (C +
    damping I)^{-1} V`` (a Cholesky factor's triangular solve, the square
    root of a diagonal or eigen inverse).  Quadratic forms such as
    self-influence then cost one half solve and a squared norm per row.
    Backends without it simply do not define the method.

    Backends are scikit-learn estimators for ``get_params``/``set_params``/
    ``clone``, so ``InfluenceScorer(curvature=CGCurvature(rtol=1e-6))`` can be
    tuned through ``curvature__rtol``.
    """

    _parameter_constraints: dict = {}
    _auto_damping_scale: float = AUTO_DAMPING_SCALE

    def fit(
        self,
        adapter: Any,
        *,
        damping: float | str = 0.0,
        verbose: int = 0,
        memory_budget: int | None = None,
    ) -> CurvatureBackend:
        """Fit the backend to ``adapter``'s training objective.

        Parameters
        ----------
        adapter : ModelAdapter
            The model adapter (see :func:`skinfluence.models.make_adapter`).
        damping : float or "auto", default=0.0
            Non-negative Tikhonov damping added to the curvature, or
            ``"auto"`` for a fraction of its mean eigenvalue.
        verbose : int, default=0
            Progress bars on iterative work when positive.
        memory_budget : int or None, default=None
            Bytes any one dense allocation may take (a ``p x p`` matrix, a
            block of temporaries); ``None``: the library defaults.  Dense
            backends refuse before allocating when they do not fit.

        Returns
        -------
        self : CurvatureBackend
        """
        self._validate_params()
        if memory_budget is not None and (
            not isinstance(memory_budget, Integral)
            or isinstance(memory_budget, bool)
            or memory_budget < 1
        ):
            raise ValueError(
                f"memory_budget must be a positive number of bytes or None; got "
                f"{memory_budget!r} (InfluenceScorer parses strings like '2GB')."
            )
        self.memory_budget_ = None if memory_budget is None else int(memory_budget)
        if not (damping == "auto" or (isinstance(damping, Real) and damping >= 0)):
            raise ValueError(
                f"damping must be a number >= 0 or 'auto'; got {damping!r}."
            )
        if isinstance(damping, Real) and not np.isfinite(damping):
            raise ValueError(f"damping must be finite; got {damping!r}.")
        self.n_params_ = int(adapter.n_params)
        self._verbose = verbose
        self._fit(adapter)
        if damping == "auto":
            self.damping_ = float(self._auto_damping_scale * self.mean_eigenvalue_)
        else:
            self.damping_ = float(damping)
        self._factorize()
        return self

    def solve(self, V: NDArray) -> NDArray:
        """Return ``(C + damping I)^{-1} V``.

        Parameters
        ----------
        V : ndarray of shape (n_params, k) or (n_params,)
            Right-hand sides.

        Returns
        -------
        X : ndarray of the same shape as ``V``
        """
        check_is_fitted(self)
        V = np.asarray(V, dtype=np.float64)
        if V.ndim not in (1, 2) or V.shape[0] != self.n_params_:
            raise ValueError(f"V must have shape ({self.n_params_}, k); got {V.shape}.")
        if V.ndim == 1:
            return self._solve(V[:, None])[:, 0]
        if V.shape[1] == 0:
            return V.copy()
        return self._solve(V)

    def solve_width(self, adapter: Any) -> int:
        """Float64 temporaries one right-hand side of :meth:`solve` costs.

        Callers size their blocks of right-hand sides as ``budget / (8 *
        width)``.  The default is a matrix-free product's, which holds
        per-sample outputs for every training row (``n_train * n_outputs``)
        besides a few ``n_params`` vectors; backends that apply a stored
        factor override it with ``~n_params``.

        Parameters
        ----------
        adapter : ModelAdapter

        Returns
        -------
        width : int
        """
        p = int(adapter.n_params)
        return 4 * p + int(adapter.n_train) * int(adapter.n_outputs)

    def as_linear_operator(self) -> LinearOperator:
        """The inverse curvature as a ``scipy`` ``LinearOperator``."""
        check_is_fitted(self)
        p = self.n_params_
        return LinearOperator(
            (p, p),
            matvec=self.solve,
            matmat=self.solve,
            rmatvec=self.solve,
            dtype=np.float64,
        )

    @abstractmethod
    def _fit(self, adapter: Any) -> None: ...

    def _factorize(self) -> None:
        """Work that depends on ``damping_``; nothing by default."""

    @abstractmethod
    def _solve(self, V: NDArray) -> NDArray: ...


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def dense_operator(op: LinearOperator, budget: int | None = None) -> NDArray:
    """Assemble a symmetric ``LinearOperator`` densely, in column chunks."""
    return dense_from_matmat(op.matmat, op.shape[0], budget=budget)


def hessian_diagonal(adapter: Any, random_state: Any = 0) -> NDArray:
    """The adapter's exact Hessian diagonal, or a Hutchinson estimate."""
    if isinstance(adapter, HessianDiagonal):
        return np.asarray(adapter.hessian_diagonal(), dtype=np.float64)
    op = adapter.hessian_operator()
    return hutchinson_diagonal(op.matmat, adapter.n_params, random_state)


def ggn_diagonal(adapter: Any, random_state: Any = 0) -> NDArray:
    """The adapter's exact Gauss-Newton diagonal, or a Hutchinson estimate."""
    if isinstance(adapter, GGNDiagonal):
        return np.asarray(adapter.ggn_diagonal(), dtype=np.float64)
    op = adapter.ggn_operator()
    return hutchinson_diagonal(op.matmat, adapter.n_params, random_state)


def hessian_matrix(adapter: Any, budget: int | None = None) -> NDArray:
    """The adapter's dense Hessian, or one assembled from its products."""
    if isinstance(adapter, DenseCurvature):
        return np.array(adapter.hessian_matrix(), dtype=np.float64)
    return dense_operator(adapter.hessian_operator(), budget)


def ggn_matrix(adapter: Any, budget: int | None = None) -> NDArray:
    """The adapter's dense Gauss-Newton matrix, or one assembled from products."""
    if isinstance(adapter, DenseCurvature):
        return np.array(adapter.ggn_matrix(), dtype=np.float64)
    return dense_operator(adapter.ggn_operator(), budget)


class DenseFactor:
    """Cholesky of a symmetric matrix, or its eigen pseudo-inverse.

    The fallback runs when the matrix is not positive definite; eigenvalues
    at or below ``rcond * max |eig|`` get an inverse of 0.
    """

    def __init__(self, A: NDArray, rcond: float) -> None:
        self.min_eigenvalue = None
        try:
            self._chol = linalg.cho_factor(A, lower=True, check_finite=True)
            self.method = "cholesky"
        except linalg.LinAlgError:
            w, Q = linalg.eigh(A)
            self.min_eigenvalue = float(w[0])
            self.cutoff = rcond * max(abs(w[0]), abs(w[-1]))
            keep = w > self.cutoff
            self._eig = (Q, np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0))
            self.method = "eigen"

    def solve(self, V: NDArray) -> NDArray:
        if self.method == "cholesky":
            return linalg.cho_solve(self._chol, V, check_finite=False)
        Q, inv = self._eig
        return Q @ (inv[:, None] * (Q.T @ V))

    def half_solve(self, V: NDArray) -> NDArray:
        """``W`` with ``W^T W = V^T A^{-1} V``: ``L^{-1} V`` for ``A = L L^T``,
        ``inv^{1/2} Q^T V`` for the eigen pseudo-inverse."""
        if self.method == "cholesky":
            L, lower = self._chol
            return linalg.solve_triangular(L, V, lower=lower, check_finite=False)
        Q, inv = self._eig
        return np.sqrt(inv)[:, None] * (Q.T @ V)


def check_rhs(backend: CurvatureBackend, V: NDArray) -> NDArray:
    """``V`` as a float64 (n_params, k) block for ``half_solve``, or a
    ``ValueError`` naming the shape expected."""
    check_is_fitted(backend)
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2 or V.shape[0] != backend.n_params_:
        raise ValueError(f"V must have shape ({backend.n_params_}, k); got {V.shape}.")
    return V
