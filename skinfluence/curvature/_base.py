"""The curvature backend interface: fit once, then solve blocks."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse.linalg import LinearOperator
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted


class CurvatureBackend(BaseEstimator, metaclass=ABCMeta):
    """Apply ``(H + damping I)^{-1}`` to blocks ``V`` of shape (n_params, k).

    ``H`` is the Hessian of the training objective as the model adapter
    defines it (including the L2 term and, for symmetric parametrisations, the
    projector onto the flat directions; see :mod:`skinfluence.models`).
    Subclasses write ``_fit`` and ``_solve`` only.

    Backends are scikit-learn estimators for ``get_params``/``set_params``/
    ``clone``, so ``InfluenceScorer(curvature=CGCurvature(rtol=1e-6))`` can be
    tuned through ``curvature__rtol``.
    """

    _parameter_constraints: dict = {}

    def fit(self, adapter: Any, *, damping: float = 0.0) -> CurvatureBackend:
        """Fit the backend to ``adapter``'s training objective.

        Parameters
        ----------
        adapter : ModelAdapter
            The model adapter (see :func:`skinfluence.models.make_adapter`).
        damping : float, default=0.0
            Non-negative Tikhonov damping added to the curvature.

        Returns
        -------
        self : CurvatureBackend
        """
        self._validate_params()
        if not np.isfinite(damping) or damping < 0:
            raise ValueError(f"damping must be a finite number >= 0; got {damping!r}.")
        self.n_params_ = int(adapter.n_params)
        self.damping_ = float(damping)
        self._fit(adapter)
        return self

    def solve(self, V: NDArray) -> NDArray:
        """Return ``(H + damping I)^{-1} V``.

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        return tags

    @abstractmethod
    def _fit(self, adapter: Any) -> None: ...

    @abstractmethod
    def _solve(self, V: NDArray) -> NDArray: ...
