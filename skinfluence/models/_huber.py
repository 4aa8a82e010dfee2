"""Closed-form adapter for scikit-learn's ``HuberRegressor``.

scikit-learn minimises, over the coefficients ``w``, the intercept ``c`` and
the scale ``sigma > 0``::

    sum_i s_i [sigma + H(r_i / sigma) sigma] + alpha ||w||^2,
    r_i = y_i - x_i w - c,
    H(u) = u^2 (|u| <= epsilon),  2 epsilon |u| - epsilon^2 (otherwise),

so the scale is a parameter like the others.  On the mean scale used across
skinfluence, ``J(theta) = (1/n) sum_i s_i loss_i + (1/2) theta^T diag(penalty)
theta`` with ``theta = [w, c, sigma]``, ``loss_i = sigma + H(r_i/sigma) sigma``
and ``penalty = 2 alpha / n`` on ``w`` only (note: ``alpha``, not
``alpha / 2``, multiplies ``||w||^2``).  The penalty is on the sum scale, so
removing a point at the same ``alpha`` is the loss gradient alone.

Per row, with ``z = x w + c`` and ``x~ = [x, 1]``: an inlier
(``|r| <= epsilon sigma``) has gradient ``[-2 r x~ / sigma, 1 - r^2/sigma^2]``
and Hessian ``(2 / sigma) u u^T`` with ``u = [x~, r / sigma]``; an outlier has
gradient ``[-2 epsilon sign(r) x~, 1 - epsilon^2]`` and zero Hessian.  The
objective is twice differentiable except where a residual sits exactly on
the threshold (a set of measure zero): the Hessian there is the inlier one.

Sparse features stay sparse (CSR, as in the linear family): products with
the data are sparse-times-dense, and only blocks that are dense by nature
(per-row gradients, Jacobians, the ``p x p`` Hessian) are dense.

This file is the whole model family: it registers itself with
:func:`~skinfluence.models.make_adapter` and implements the adapter contract.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.sparse.linalg import LinearOperator
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import HuberRegressor
from sklearn.utils import check_array

from .._constants import RETRAIN_MAX_ITER, RETRAIN_TOL
from ..utils._linalg import check_dense_fits
from ._base import make_adapter
from ._linear import (
    _sample_weight,
    dense_rows,
    gram,
    model_features,
    mul,
    row_outer,
    squared,
    tmul,
    with_intercept_column,
)


class HuberAdapter:
    """Influence ingredients of a fitted ``HuberRegressor``.

    Parameters
    ----------
    estimator : HuberRegressor
        The fitted model.
    X : array-like of shape (n_train, n_features)
        Training inputs as given to the whole model (before ``preprocess``).
    y : array-like of shape (n_train,)
        Training targets.
    preprocess : transformer or None, default=None
        Fitted preprocessing, treated as fixed.
    X_features : ndarray, sparse matrix or None, default=None
        ``preprocess.transform(X)`` when the caller already has it.
    sample_weight : array-like of shape (n_train,) or None, default=None
        The weights the model was fitted with.
    batch_size, verbose : ignored
        Closed forms are vectorised over all rows.

    Attributes
    ----------
    n_params : int
        ``n_features + fit_intercept + 1`` (the scale is the last parameter).
    n_train, n_outputs : int
    weights : ndarray of shape (n_train,)
    penalty : ndarray of shape (n_params,)
    removal_gradient : str
        ``"loss"``: the penalty is on the sum scale.
    """

    is_classifier = False
    classes = None
    n_outputs = 1
    removal_gradient = "loss"

    def __init__(
        self,
        estimator: HuberRegressor,
        X: ArrayLike,
        y: ArrayLike,
        *,
        preprocess: Any = None,
        X_features: Any = None,
        sample_weight: ArrayLike | None = None,
        batch_size: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.estimator = estimator
        self.preprocess = preprocess
        self.X_features = self._features(X) if X_features is None else X_features
        if sparse.issparse(self.X_features):  # any format in, canonical CSR held
            self.X_features = model_features(None, self.X_features)
        self.y = check_array(
            np.asarray(y), ensure_2d=False, dtype=np.float64, input_name="y"
        )
        if self.y.ndim != 1:
            raise ValueError(f"HuberRegressor takes a 1-D y; got {self.y.shape}.")
        n, d = self.X_features.shape
        if len(estimator.coef_) != d:
            raise ValueError(
                f"The model has {len(estimator.coef_)} coefficients but the "
                f"(preprocessed) training data has {d} features."
            )
        self.n_train = n
        self.fit_intercept = bool(estimator.fit_intercept)
        self.epsilon = float(estimator.epsilon)
        self.sample_weight = _sample_weight(sample_weight, n)
        self.weights = (
            np.ones(n) if sample_weight is None else self.sample_weight.copy()
        )
        theta = [np.asarray(estimator.coef_, dtype=np.float64)]
        if self.fit_intercept:
            theta.append([float(estimator.intercept_)])
        theta.append([float(estimator.scale_)])
        self._theta = np.concatenate(theta)
        self.n_params = len(self._theta)
        self.penalty = np.zeros(self.n_params)
        self.penalty[:d] = 2.0 * float(estimator.alpha) / n
        self.null_basis = np.zeros((self.n_params, 0))
        self._Xt = self._augment(self.X_features)

    # -- data plumbing --------------------------------------------------------

    def _features(self, X: ArrayLike) -> Any:
        return model_features(self.preprocess, X)

    def _augment(self, F: Any) -> Any:
        return with_intercept_column(F, self.fit_intercept)

    def _residuals(self, Xt: Any, y: NDArray, theta: NDArray) -> NDArray:
        return y - mul(Xt, theta[:-1])

    def _parts(self, Xt: NDArray, y: NDArray, theta: NDArray | None = None):
        """Residuals, scale and the inlier mask."""
        theta = self._theta if theta is None else theta
        r = self._residuals(Xt, y, theta)
        sigma = theta[-1]
        return r, sigma, np.abs(r) <= self.epsilon * sigma

    def _grad_parts(self, Xt: Any, y: NDArray, theta: NDArray | None = None):
        """Per row, the loss derivatives in the prediction and the scale."""
        r, sigma, inl = self._parts(Xt, y, theta)
        eps = self.epsilon
        dz = np.where(inl, -2.0 * r / sigma, -2.0 * eps * np.sign(r))
        ds = np.where(inl, 1.0 - (r / sigma) ** 2, 1.0 - eps**2)
        return dz, ds

    def _grads_at(self, Xt: Any, y: NDArray, theta: NDArray | None = None):
        dz, ds = self._grad_parts(Xt, y, theta)
        return np.hstack([row_outer(dz[:, None], Xt), ds[:, None]])

    def _y(self, y: ArrayLike) -> NDArray:
        return check_array(
            np.asarray(y), ensure_2d=False, dtype=np.float64, input_name="y"
        ).reshape(-1)

    # -- the adapter contract ---------------------------------------------------

    def params(self) -> NDArray:
        """``[coef_, intercept_, scale_]`` (the intercept only when fitted)."""
        return self._theta.copy()

    def loss(self, X: ArrayLike, y: ArrayLike) -> NDArray:
        """Per-sample ``sigma + H(r / sigma) sigma``, shape (m,)."""
        Xt = self._augment(self._features(X))
        r, sigma, inl = self._parts(Xt, self._y(y))
        eps = self.epsilon
        return sigma + np.where(inl, r**2 / sigma, 2 * eps * np.abs(r) - sigma * eps**2)

    def prediction(self, X: ArrayLike) -> NDArray:
        """The prediction ``x w + c``, shape (m,)."""
        return mul(self._augment(self._features(X)), self._theta[:-1])

    def loss_grads(self, X: ArrayLike, y: ArrayLike) -> NDArray:
        """Per-sample loss gradients of shape (m, n_params)."""
        return self._grads_at(self._augment(self._features(X)), self._y(y))

    def prediction_grads(self, X: ArrayLike) -> NDArray:
        """Gradients of :meth:`prediction`: ``[x~, 0]``, shape (m, n_params)."""
        Xt = self._augment(self._features(X))
        return np.hstack([dense_rows(Xt), np.zeros((Xt.shape[0], 1))])

    def train_grads(
        self, rows: Any = slice(None), *, total: bool = False, labels: Any = None
    ) -> NDArray:
        """Weighted training gradients ``w_i grad loss_i``, shape (b, n_params)."""
        if labels is not None:
            raise ValueError("Relabelling needs a classifier; HuberRegressor is not.")
        G = self._grads_at(self._Xt[rows], self.y[rows]) * self.weights[rows, None]
        if total:
            G += self.penalty * self._theta
        return G

    def train_grad_products(
        self, Q: NDArray, rows: Any = slice(None), *, total: bool = False
    ) -> NDArray:
        """``train_grads(rows, total=total) @ Q`` without the gradient block:
        ``w_i (dz_i x~_i^T Q[:-1] + ds_i Q[-1])``, a (sparse) product.

        Parameters
        ----------
        Q : ndarray of shape (n_params, k) or (n_params,)
        rows : slice or array of int, default=slice(None)
        total : bool, default=False

        Returns
        -------
        GQ : ndarray of shape (b, k), or (b,) for a 1-D ``Q``
        """
        Q = np.asarray(Q, dtype=np.float64)
        if Q.shape[0] != self.n_params or Q.ndim not in (1, 2):
            raise ValueError(
                f"Q must have shape ({self.n_params}, k), one row per parameter; "
                f"got {Q.shape}."
            )
        Q2 = Q.reshape(self.n_params, -1)
        Xt = self._Xt[rows]
        dz, ds = self._grad_parts(Xt, self.y[rows])
        out = dz[:, None] * mul(Xt, Q2[:-1]) + ds[:, None] * Q2[-1]
        out *= self.weights[rows, None]
        if total:
            out += (self.penalty * self._theta) @ Q2
        return out[:, 0] if Q.ndim == 1 else out

    def train_prediction_grads(self, rows: Any = slice(None)) -> NDArray:
        """:meth:`prediction_grads` at training rows, shape (b, n_params)."""
        Xt = self._Xt[rows]
        return np.hstack([dense_rows(Xt), np.zeros((Xt.shape[0], 1))])

    def objective_grad(self) -> NDArray:
        """Gradient of ``J`` at the fitted parameters, shape (n_params,)."""
        dz, ds = self._grad_parts(self._Xt, self.y)
        w = self.weights
        g = np.append(tmul(self._Xt, w * dz), w @ ds)
        return g / self.n_train + self.penalty * self._theta

    def _curvature_rows(self, rows: Any) -> tuple[Any, NDArray]:
        """``U`` (b, p) and ``c`` (b,) with row Hessians ``c_i u_i u_i^T``
        (``U`` sparse CSR when the features are)."""
        Xt, y = self._Xt[rows], self.y[rows]
        r, sigma, inl = self._parts(Xt, y)
        if sparse.issparse(Xt):
            fmt = sparse.csr_array if isinstance(Xt, sparse.sparray) else None
            col = (fmt or sparse.csr_matrix)((r / sigma)[:, None])
            U = sparse.hstack([Xt, col], format="csr")
        else:
            U = np.hstack([Xt, (r / sigma)[:, None]])
        return U, np.where(inl, 2.0 / sigma, 0.0) * self.weights[rows]

    def hessian_matvec(self, V: NDArray, rows: Any = None) -> NDArray:
        """``H V`` for ``V`` of shape (n_params, m); ``rows`` averages the data
        term over those rows only (a minibatch Hessian)."""
        V = np.asarray(V, dtype=np.float64)
        U, c = self._curvature_rows(slice(None) if rows is None else rows)
        out = tmul(U, c[:, None] * mul(U, V.reshape(self.n_params, -1)))
        out /= U.shape[0]
        out += self.penalty[:, None] * V.reshape(self.n_params, -1)
        return out.reshape(V.shape)

    ggn_matvec = hessian_matvec

    def hessian_operator(self) -> LinearOperator:
        """``H`` as a symmetric ``scipy`` ``LinearOperator``."""
        p = self.n_params
        return LinearOperator(
            (p, p),
            matvec=self.hessian_matvec,
            matmat=self.hessian_matvec,
            rmatvec=self.hessian_matvec,
            dtype=np.float64,
        )

    def ggn_operator(self) -> LinearOperator:
        """The Gauss-Newton matrix: the Hessian itself (it is PSD here)."""
        return self.hessian_operator()

    def row_curvature(self, rows: Any = slice(None)) -> tuple[NDArray, NDArray]:
        """Each row's curvature ``J_i^T M_i J_i``: ``J_i = u_i`` (one row),
        ``M_i = 2 w_i / sigma`` for inliers and 0 for outliers."""
        U, c = self._curvature_rows(rows)
        return dense_rows(U)[:, None, :], c[:, None, None]

    def residual_parts(self) -> dict[str, Any]:
        """Response residuals ``y - x w - c``; the scale is estimated."""
        e = self._residuals(self._Xt, self.y, self._theta)
        return {
            "response": e,
            "pearson": e * np.sqrt(self.weights),
            "dmu_dz": np.ones_like(e),
            "fixed_dispersion": False,
        }

    def parameter_names(self, feature_names: Any = None) -> list[str]:
        """``<feature>``, ``intercept`` and ``scale``."""
        d = self.X_features.shape[1]
        names = list(feature_names) if feature_names is not None else None
        if names is None or len(names) != d:
            names = [f"x{j}" for j in range(d)]
        extra = (["intercept"] if self.fit_intercept else []) + ["scale"]
        return [str(f) for f in names] + extra

    def data_hessian_sum(self, rows: Any = slice(None)) -> NDArray:
        """``sum_{i in rows} w_i Hessian(loss_i)``, dense, no penalty (refused
        before allocating when over the dense memory budget)."""
        check_dense_fits(self.n_params, "data Hessian")
        U, c = self._curvature_rows(rows)
        return gram(U, c)

    def hessian_matrix(self) -> NDArray:
        """Dense ``H`` of shape (n_params, n_params), closed form."""
        H = self.data_hessian_sum() / self.n_train
        H[np.diag_indices_from(H)] += self.penalty
        return H

    ggn_matrix = hessian_matrix

    def hessian_diagonal(self) -> NDArray:
        """Diagonal of ``H``, closed form."""
        U, c = self._curvature_rows(slice(None))
        return tmul(squared(U), c) / self.n_train + self.penalty

    ggn_diagonal = hessian_diagonal

    def retrain(
        self, keep: NDArray, *, warm_start: bool = True, random_state: Any = None
    ) -> HuberAdapter:
        """Refit ``HuberRegressor`` on the kept rows, tightly (``tol=1e-10``).

        Parameters
        ----------
        keep : ndarray of bool of shape (n_train,) or of int
            Rows to keep.
        warm_start : bool, default=True
            Start from the current parameters.
        random_state : ignored
            The solver is deterministic.

        Returns
        -------
        adapter : HuberAdapter
        """
        est = copy.deepcopy(self.estimator) if warm_start else clone(self.estimator)
        est.set_params(
            tol=RETRAIN_TOL,
            max_iter=max(est.max_iter, RETRAIN_MAX_ITER),
            warm_start=warm_start,
        )
        Xk, yk = self.X_features[keep], self.y[keep]
        sw = None if self.sample_weight is None else self.sample_weight[keep]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(Xk, yk, sample_weight=sw)
        return HuberAdapter(
            est, None, yk, preprocess=self.preprocess, X_features=Xk, sample_weight=sw
        )

    def _with_params(self, theta: NDArray) -> HuberAdapter:
        new = copy.copy(self)
        new._theta = np.asarray(theta, dtype=np.float64).copy()
        return new

    # -- capabilities (skinfluence.models._contract) --------------------------

    @property
    def train_indices(self) -> NDArray:
        """Every row of the fit ``X`` is trained on: ``arange(n_train)``."""
        return np.arange(self.n_train)

    def with_params(self, theta: NDArray) -> HuberAdapter:
        """The same model and data at the parameters ``theta``."""
        return self._with_params(theta)

    def __repr__(self) -> str:
        return f"HuberAdapter({self.estimator!r})"


@make_adapter.register(HuberRegressor)
def _(estimator: HuberRegressor, X: ArrayLike, y: ArrayLike, **kwargs: Any):
    return HuberAdapter(estimator, X, y, **kwargs)
