"""Closed-form adapter for scikit-learn linear models.

Supported: ``LinearRegression``, ``Ridge`` and ``LogisticRegression`` (binary
and multinomial, with or without intercept, any solver, ``class_weight``).

Every model is written as ``K`` outputs ``z = W~ x~`` with ``x~ = [x, 1]``
(the 1 only with an intercept) and ``W~ = [coef_, intercept_]`` of shape
``(K, d~)``; the parameter vector is ``theta = W~.ravel()`` (row-major, class
by class).  A loss on the outputs gives per-sample gradients
``g_i = r_i (x) x~_i`` with ``r_i = dloss/dz`` and the Hessian
``H = (1/n) sum_i w_i A_i (x) x~_i x~_i^T + diag(penalty)`` with
``A_i = d^2 loss / dz^2`` -- exact for these models (Hessian = GGN).

The objective is read exactly as scikit-learn defines it, rescaled to
``J(theta) = (1/n) sum_i w_i loss_i + (1/2) theta^T diag(penalty) theta``:

* ``LogisticRegression``: sklearn minimises ``C sum_i w_i loss_i + ||coef||^2/2``
  so the penalty is ``1/(C n)`` on ``coef_`` and 0 on the intercept (``liblinear``
  penalises its synthetic feature, i.e. ``intercept/intercept_scaling``);
  ``w_i`` are the ``class_weight`` factors.
* ``Ridge``: ``||y - Xw - b||^2 + alpha ||w||^2`` with the half squared error
  per sample gives ``alpha / n`` on ``coef_``.
* ``LinearRegression``: no penalty.

Removing training point ``i`` and refitting with the *same* hyper-parameters
subtracts ``w_i loss_i`` from the sklearn objective, so the parameter shift is
``H^{-1} g_i / n`` with the loss-only gradient -- which is why
``train_gradient="loss"`` is the default.  Class weights are treated as fixed:
with ``class_weight="balanced"`` scikit-learn recomputes every class's weight
from the new class counts on refit, an effect influence ignores (measured on
an imbalanced breast-cancer split: LOO Pearson 0.978 against 0.999 with the
equivalent fixed dict).

The multinomial parametrisation is symmetric: adding the same vector to every
class row leaves every probability unchanged.  Along the unpenalised columns
(the intercept, or all columns when ``C=inf``) this makes ``H`` singular.
Gradients are orthogonal to those directions, so the adapter reports their
orthonormal basis as ``null_basis`` and adds its projector to the Hessian:
solves then return the minimum-norm (pseudo-inverse) answer.

Sparse features (a ``TfidfVectorizer`` in the pipeline, a CSR/CSC/COO
matrix) stay sparse: the augmented matrix ``X~`` is held as CSR float64 and
every product with it (outputs, Hessian products, the diagonal, gradients
multiplied into a block by :meth:`LinearAdapter.train_grad_products`) is a
sparse-times-dense product.  Only what is dense by nature is dense: a block
of per-row gradients ``(b, p)``, a row block of Jacobians, the ``p x p``
data Hessian (checked against the dense memory budget first).
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, sparse
from scipy.sparse.linalg import LinearOperator
from scipy.special import expit, log_expit, logsumexp, softmax
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    GammaRegressor,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    PoissonRegressor,
    Ridge,
    RidgeClassifier,
    RidgeClassifierCV,
    RidgeCV,
    SGDClassifier,
    SGDRegressor,
    TweedieRegressor,
)
from sklearn.utils import check_array
from sklearn.utils.class_weight import compute_class_weight

from .._constants import RETRAIN_MAX_ITER, RETRAIN_TOL
from ..utils._linalg import check_dense_fits
from ._base import encode_labels, make_adapter

# ---------------------------------------------------------------------------
# Losses on the outputs z (n, K)
# ---------------------------------------------------------------------------


class _SquaredLoss:
    """``loss = ||z - y||^2 / 2``; ``y`` of shape (n, K)."""

    def loss(self, Z: NDArray, t: NDArray) -> NDArray:
        return 0.5 * np.sum((Z - t) ** 2, axis=1)

    def residual(self, Z: NDArray, t: NDArray) -> NDArray:
        return Z - t

    def hess_apply(self, Z: NDArray, U: NDArray, t: NDArray | None = None) -> NDArray:
        return U

    def hess_entries(self, Z: NDArray, t: NDArray | None = None) -> NDArray:
        K = Z.shape[1]
        return np.broadcast_to(np.eye(K), (Z.shape[0], K, K))

    def mean(self, Z: NDArray) -> tuple[NDArray, NDArray]:
        """The prediction ``y_hat`` and ``d y_hat / d z`` (identity link)."""
        return Z, np.ones_like(Z)


class _BinomialLoss:
    """Binary log-loss on one logit; ``t`` in {0, 1} of shape (n, 1)."""

    def loss(self, Z: NDArray, t: NDArray) -> NDArray:
        z = Z[:, 0]
        return -(t[:, 0] * log_expit(z) + (1 - t[:, 0]) * log_expit(-z))

    def residual(self, Z: NDArray, t: NDArray) -> NDArray:
        return expit(Z) - t

    def hess_apply(self, Z: NDArray, U: NDArray, t: NDArray | None = None) -> NDArray:
        p = expit(Z)
        a = (p * (1 - p)).reshape(p.shape + (1,) * (U.ndim - 2))
        return a * U

    def hess_entries(self, Z: NDArray, t: NDArray | None = None) -> NDArray:
        p = expit(Z)
        return (p * (1 - p))[:, :, None]


class _OvRLoss(_BinomialLoss):
    """One binary log-loss per output (one-vs-rest), summed; ``t`` one-hot.

    The objective of ``SGDClassifier(loss="log_loss")`` on more than two
    classes: K independent binary problems sharing the data.
    """

    def loss(self, Z: NDArray, t: NDArray) -> NDArray:
        return -np.sum(t * log_expit(Z) + (1 - t) * log_expit(-Z), axis=1)

    def hess_entries(self, Z: NDArray, t: NDArray | None = None) -> NDArray:
        p = expit(Z)
        return (p * (1 - p))[:, :, None] * np.eye(Z.shape[1])


class _MultinomialLoss:
    """Softmax cross-entropy on K logits; ``t`` one-hot of shape (n, K)."""

    def loss(self, Z: NDArray, t: NDArray) -> NDArray:
        return logsumexp(Z, axis=1) - np.sum(Z * t, axis=1)

    def residual(self, Z: NDArray, t: NDArray) -> NDArray:
        return softmax(Z, axis=1) - t

    def hess_apply(self, Z: NDArray, U: NDArray, t: NDArray | None = None) -> NDArray:
        # (diag p - p p^T) U = p * (U - p^T U) for U of shape (n, K) or
        # (n, K, m): one (n, K, m) temporary, the rest in place (3x faster
        # than the three broadcast products it replaces at n=20,000, m=100)
        P = softmax(Z, axis=1)
        if U.ndim == 2:
            return P * (U - np.sum(P * U, axis=1, keepdims=True))
        out = U - np.einsum("nk,nkm->nm", P, U)[:, None, :]
        out *= P[:, :, None]
        return out

    def hess_entries(self, Z: NDArray, t: NDArray | None = None) -> NDArray:
        P = softmax(Z, axis=1)
        return P[:, :, None] * np.eye(P.shape[1]) - P[:, :, None] * P[:, None, :]


class _TweedieLoss:
    """Half Tweedie deviance of power ``p`` with a log or identity link.

    ``mu = exp(z)`` or ``mu = z``; per sample ``L(y, mu)`` is half the unit
    deviance: ``(y - mu)^2 / 2`` (p = 0), ``y log(y / mu) - y + mu`` (p = 1,
    Poisson), ``log(mu / y) + y / mu - 1`` (p = 2, Gamma), and in general
    ``y^(2-p) / ((1-p)(2-p)) - y mu^(1-p) / (1-p) + mu^(2-p) / (2-p)``; so the
    loss is 0 at ``mu = y`` as scikit-learn's deviance.  With
    ``L'(mu) = mu^-p (mu - y)`` and ``L''(mu) = mu^(-p-1) ((1-p) mu + p y)``
    the derivatives in ``z`` follow by the chain rule (log link:
    ``l' = L' mu``, ``l'' = L'' mu^2 + L' mu``).  The Hessian in ``z`` is not
    always positive (log link with p < 1 or p > 2, identity link): it is still
    exact, since the model is linear in ``z``.
    """

    def __init__(self, power: float, link: str) -> None:
        self.power = float(power)
        self.link = link

    def _mu(self, Z: NDArray) -> NDArray:
        return np.exp(Z) if self.link == "log" else Z

    def loss(self, Z: NDArray, t: NDArray) -> NDArray:
        mu, y, p = self._mu(Z[:, 0]), t[:, 0], self.power
        with np.errstate(divide="ignore", invalid="ignore"):
            if p == 0:
                out = 0.5 * (y - mu) ** 2
            elif p == 1:
                out = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
                out += mu - y
            elif p == 2:
                out = np.log(mu / y) + y / mu - 1
            else:
                out = (
                    np.maximum(y, 0) ** (2 - p) / ((1 - p) * (2 - p))
                    - y * mu ** (1 - p) / (1 - p)
                    + mu ** (2 - p) / (2 - p)
                )
        return out

    def _derivatives(self, Z: NDArray, t: NDArray | None) -> tuple[NDArray, ...]:
        mu, p = self._mu(Z), self.power
        y = mu if t is None else t
        d1 = mu ** (-p) * (mu - y)
        d2 = mu ** (-p - 1) * ((1 - p) * mu + p * y)
        if self.link == "log":
            return d1 * mu, d2 * mu**2 + d1 * mu
        return d1, d2

    def residual(self, Z: NDArray, t: NDArray) -> NDArray:
        return self._derivatives(Z, t)[0]

    def hess_apply(self, Z: NDArray, U: NDArray, t: NDArray | None = None) -> NDArray:
        a = self._hess(Z, t)
        return a.reshape(a.shape + (1,) * (U.ndim - 2)) * U

    def hess_entries(self, Z: NDArray, t: NDArray | None = None) -> NDArray:
        return self._hess(Z, t)[:, :, None]

    def _hess(self, Z: NDArray, t: NDArray | None) -> NDArray:
        if t is None:
            raise ValueError(
                "The Tweedie curvature depends on the targets; pass them (t=...)."
            )
        return self._derivatives(Z, t)[1]

    def mean(self, Z: NDArray) -> tuple[NDArray, NDArray]:
        """The prediction ``mu`` and ``d mu / d z``."""
        mu = self._mu(Z)
        return mu, (mu if self.link == "log" else np.ones_like(Z))


# ---------------------------------------------------------------------------
# Reading the objective from the estimator
# ---------------------------------------------------------------------------


def _reject(estimator: Any, why: str) -> None:
    raise ValueError(f"Cannot compute influence for {estimator!r}: {why}")


@dataclass
class _Objective:
    """A fitted model's training objective on the mean scale.

    ``J = (1/n) sum_i w_i loss(z_i, t_i) + (1/2) theta^T diag(penalty) theta``
    with ``lam`` the penalty on ``coef_`` (a scalar or one per output) and
    ``lam_b`` on the intercept.  ``encoding`` says how labels become targets
    ``t``; ``removal`` is the training gradient that matches refitting
    without a point at the same hyper-parameters ("loss" when the penalty is
    on the sum scale, "total" when the model averages its loss so that the
    penalty's share of each row leaves with it); ``share_by_weight``: that
    share is proportional to the row's sample weight (GLMs normalise the
    weights), else one per row; ``refit`` builds the estimator a retrain
    fits (the selected hyper-parameters of a CV model held fixed);
    ``minimize_refit``: retrain by minimising ``J`` itself (stochastic
    solvers, whose own refit is not a ground truth).
    """

    loss: Any
    lam: Any
    lam_b: float = 0.0
    classes: NDArray | None = None
    encoding: str = "real"
    removal: str = "loss"
    share_by_weight: bool = False
    refit: Callable[[], Any] | None = None
    minimize_refit: bool = False


def _logistic_spec(est: LogisticRegression, n: int) -> _Objective:
    C = getattr(est, "C", None)
    refit = None
    if isinstance(est, LogisticRegressionCV):
        # the selected C_ (and l1_ratio_) are held fixed, like any other
        # hyper-parameter: removal is predicted for LogisticRegression(C=C_)
        C = float(np.ravel(est.C_)[0])
        l1_ratio = float(np.ravel(getattr(est, "l1_ratio_", [0.0]))[0] or 0.0)
        penalty = getattr(est, "penalty", "deprecated")
        if penalty in ("l1", "elasticnet") and penalty != "deprecated":
            l1_ratio = 1.0 if penalty == "l1" else l1_ratio
        if l1_ratio > 0:
            _reject(
                est,
                "influence needs a twice-differentiable objective, and the "
                f"selected l1_ratio_={l1_ratio!r} adds an L1 term. Use "
                "l1_ratios=(0,).",
            )

        refit = partial(
            clone,
            LogisticRegression(
                C=C,
                fit_intercept=est.fit_intercept,
                intercept_scaling=est.intercept_scaling,
                class_weight=est.class_weight,
                solver=est.solver,
                max_iter=est.max_iter,
                tol=est.tol,
            ),
        )

    else:
        penalty = getattr(est, "penalty", "deprecated")
        l1_ratio = est.l1_ratio or 0.0
        if penalty == "l1" or (penalty == "elasticnet" and l1_ratio > 0):
            _reject(
                est,
                f"influence needs a twice-differentiable objective, and "
                f"penalty={penalty!r} adds an L1 term. Leave penalty at its default "
                "and keep l1_ratio=0 (penalty='l2' before scikit-learn 1.8).",
            )
        if penalty in ("deprecated", "l2") and l1_ratio > 0:
            _reject(
                est,
                "influence needs a twice-differentiable objective, and "
                f"l1_ratio={l1_ratio!r} adds an L1 term. Use l1_ratio=0.",
            )
        if penalty is None:
            C = np.inf
    lam = 0.0 if not np.isfinite(C) else 1.0 / (C * n)
    lam_b = 0.0
    if est.solver == "liblinear" and est.fit_intercept:
        lam_b = lam / est.intercept_scaling**2
    binary = len(est.classes_) == 2
    return _Objective(
        loss=_BinomialLoss() if binary else _MultinomialLoss(),
        lam=lam,
        lam_b=lam_b,
        classes=est.classes_,
        encoding="binary" if binary else "onehot",
        refit=refit,
    )


def _ridge_spec(est: Any, n: int) -> _Objective:
    """``Ridge``/``RidgeCV``/``LinearRegression``: sum of squares + alpha."""
    _check_no_positive(est)
    alpha = getattr(est, "alpha_", getattr(est, "alpha", 0.0))
    refit = None
    if isinstance(est, RidgeCV):
        refit = partial(clone, Ridge(alpha=est.alpha_, fit_intercept=est.fit_intercept))

    return _Objective(
        loss=_SquaredLoss(), lam=np.asarray(alpha, dtype=float) / n, refit=refit
    )


def _ridge_classifier_spec(est: Any, n: int) -> _Objective:
    """Ridge on targets in {-1, +1} (one column per class beyond binary)."""
    _check_no_positive(est)
    alpha = getattr(est, "alpha_", None)
    refit = None
    if alpha is not None:  # RidgeClassifierCV: the selected alpha_ held fixed
        # a partial of clone, not a closure: the adapter must pickle
        refit = partial(
            clone,
            RidgeClassifier(
                alpha=est.alpha_,
                fit_intercept=est.fit_intercept,
                class_weight=est.class_weight,
            ),
        )

    else:
        alpha = est.alpha
    return _Objective(
        loss=_SquaredLoss(),
        lam=float(alpha) / n,
        classes=est.classes_,
        encoding="pm1",
        refit=refit,
    )


def _sgd_penalty(est: Any) -> float:
    if est.penalty is None:
        return 0.0
    if est.penalty == "l1" or (est.penalty == "elasticnet" and est.l1_ratio > 0):
        _reject(
            est,
            f"influence needs a twice-differentiable objective, and "
            f"penalty={est.penalty!r} (l1_ratio={est.l1_ratio!r}) adds an L1 term. "
            "Use penalty='l2'.",
        )
    return float(est.alpha)


def _sgd_classifier_spec(est: SGDClassifier, n: int) -> _Objective:
    """``(1/n) sum_i w_i logloss_i + (alpha/2) ||coef||^2``, one-vs-rest."""
    if est.loss != "log_loss":
        _reject(
            est,
            f"loss={est.loss!r} is not twice differentiable (or not a "
            "likelihood); influence supports SGDClassifier(loss='log_loss').",
        )
    binary = len(est.classes_) == 2
    if not binary and est.class_weight is not None:
        _reject(
            est,
            "with more than two classes SGDClassifier weighs each one-vs-rest "
            "problem differently (positives by their class weight, the rest by 1), "
            "which is not one weight per row. Use class_weight=None or "
            "LogisticRegression.",
        )
    return _Objective(
        loss=_BinomialLoss() if binary else _OvRLoss(),
        lam=_sgd_penalty(est),
        classes=est.classes_,
        encoding="binary" if binary else "onehot",
        removal="total",
        minimize_refit=True,
    )


def _sgd_regressor_spec(est: SGDRegressor, n: int) -> _Objective:
    """``(1/n) sum_i w_i (y_i - y_hat_i)^2 / 2 + (alpha/2) ||coef||^2``."""
    if est.loss != "squared_error":
        _reject(
            est,
            f"loss={est.loss!r} is not twice differentiable; influence supports "
            "SGDRegressor(loss='squared_error').",
        )
    return _Objective(
        loss=_SquaredLoss(),
        lam=_sgd_penalty(est),
        removal="total",
        minimize_refit=True,
    )


def _glm_spec(est: Any, n: int) -> _Objective:
    """Poisson/Gamma/Tweedie: ``sum_i w~_i L_i + (alpha/2) ||coef||^2``, with
    the weights normalised to sum to one (scikit-learn's GLM convention)."""
    if isinstance(est, PoissonRegressor):
        power, link = 1.0, "log"
    elif isinstance(est, GammaRegressor):
        power, link = 2.0, "log"
    else:
        power = float(est.power)
        link = est.link if est.link != "auto" else ("identity" if power <= 0 else "log")
    return _Objective(
        loss=_TweedieLoss(power, link),
        lam=float(est.alpha),
        removal="total",
        share_by_weight=True,
    )


def _objective(est: Any, n: int) -> _Objective:
    """The objective of any supported linear model (dispatch on its class)."""
    if isinstance(est, LogisticRegression):
        return _logistic_spec(est, n)
    if isinstance(est, RidgeClassifier | RidgeClassifierCV):
        return _ridge_classifier_spec(est, n)
    if isinstance(est, SGDClassifier):
        return _sgd_classifier_spec(est, n)
    if isinstance(est, SGDRegressor):
        return _sgd_regressor_spec(est, n)
    if isinstance(est, PoissonRegressor | GammaRegressor | TweedieRegressor):
        return _glm_spec(est, n)
    return _ridge_spec(est, n)


def _class_weights(
    est: Any, codes: NDArray, sample_weight: ArrayLike | None = None
) -> NDArray:
    """One weight per class, from the training labels (``"balanced"`` counts).

    ``LogisticRegression`` counts the classes by sample weight where
    scikit-learn's ``compute_class_weight`` takes one (1.9 passes it); the
    ridge and SGD classifiers count rows.
    """
    cw = getattr(est, "class_weight", None)
    if cw is None:
        return np.ones(len(est.classes_))
    kwargs = {}
    weighted = "sample_weight" in inspect.signature(compute_class_weight).parameters
    if weighted and sample_weight is not None and isinstance(est, LogisticRegression):
        kwargs["sample_weight"] = np.asarray(sample_weight, dtype=np.float64)
    return compute_class_weight(
        cw, classes=est.classes_, y=est.classes_[codes], **kwargs
    )


def _check_no_positive(est: Any) -> None:
    if getattr(est, "positive", False):
        _reject(
            est,
            "positive=True constrains the coefficients, so the fitted model is not "
            "a stationary point of a smooth objective. Use positive=False.",
        )


def _encode_targets(encoding: str, codes: NDArray, n_classes: int) -> NDArray:
    """Class indices as the model's regression targets.

    ``"binary"``: ``(n, 1)`` in {0, 1} (one logit); ``"onehot"``: ``(n, K)``;
    ``"pm1"``: ``RidgeClassifier``'s {-1, +1}, one column when binary.
    """
    if encoding == "binary":
        return (codes == 1).astype(np.float64)[:, None]
    if encoding == "onehot":
        return np.eye(n_classes)[codes]
    if n_classes == 2:
        return np.where(codes == 1, 1.0, -1.0)[:, None]
    return 2.0 * np.eye(n_classes)[codes] - 1.0


def model_features(preprocess: Any, X: ArrayLike) -> Any:
    """The final model's inputs: fixed preprocessing, then float64.

    Dense input gives a dense array; sparse input (any format) a CSR matrix
    in canonical form (sorted indices, no duplicates), never densified.
    """
    if preprocess is not None:
        X = preprocess.transform(X)
    if sparse.issparse(X):
        X = check_array(X, accept_sparse="csr", dtype=np.float64, input_name="X")
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        return X
    return check_array(X, dtype=np.float64, input_name="X")


def with_intercept_column(F: Any, fit_intercept: bool) -> Any:
    """``[F, 1]`` when the model fits an intercept, else ``F`` (CSR stays CSR)."""
    if not fit_intercept:
        return F
    ones = np.ones((F.shape[0], 1))
    if sparse.issparse(F):
        fmt = sparse.csr_array if isinstance(F, sparse.sparray) else sparse.csr_matrix
        return sparse.hstack([F, fmt(ones)], format="csr")
    return np.hstack([F, ones])


def n_rows(X: Any) -> int:
    """Number of rows of a dense array or a sparse matrix."""
    return X.shape[0]


def _csr(Xt: Any) -> Any:
    """``Xt`` as canonical CSR (a no-op for the adapters' own matrices)."""
    Xt = Xt.tocsr()
    if not Xt.has_canonical_format:
        Xt = Xt.copy()
        Xt.sum_duplicates()
    return Xt


def row_outer(R: NDArray, Xt: Any) -> NDArray:
    """Dense rows ``r_i (x) x~_i`` of shape (m, K d~), for ``R`` (m, K).

    A sparse ``Xt`` is scattered into the dense result from its nonzeros:
    the result is dense by nature, ``Xt`` is never densified on its own.
    """
    m, K = R.shape
    if not sparse.issparse(Xt):
        return (R[:, :, None] * Xt[:, None, :]).reshape(m, -1)
    Xt = _csr(Xt)
    dt = Xt.shape[1]
    out = np.zeros((m, K * dt))
    row = np.repeat(np.arange(m), np.diff(Xt.indptr))
    for k in range(K):  # 2-D scatters: faster than one 3-D fancy assignment
        out[row, k * dt + Xt.indices] = R[row, k] * Xt.data
    return out


def dense_rows(Xt: Any) -> NDArray:
    """A row block as a dense array (for results that are dense by nature)."""
    return row_outer(np.ones((n_rows(Xt), 1)), Xt)


def scale_rows(c: NDArray, Xt: Any) -> Any:
    """``diag(c) Xt``, sparse when ``Xt`` is."""
    if not sparse.issparse(Xt):
        return c[:, None] * Xt
    out = _csr(Xt).copy()
    out.data *= np.repeat(c, np.diff(out.indptr))
    return out


def squared(Xt: Any) -> Any:
    """Elementwise square, sparse when ``Xt`` is."""
    return Xt.multiply(Xt) if sparse.issparse(Xt) else Xt**2


def gram(Xt: Any, c: NDArray) -> NDArray:
    """Dense ``Xt^T diag(c) Xt`` (a sparse product first when ``Xt`` is sparse)."""
    if not sparse.issparse(Xt):
        return (Xt * c[:, None]).T @ Xt
    return (Xt.T @ scale_rows(c, Xt)).toarray()


def tmul(Xt: Any, A: NDArray) -> NDArray:
    """Dense ``Xt^T A`` (sparse-times-dense when ``Xt`` is sparse)."""
    return np.asarray(Xt.T @ A)


def mul(Xt: Any, A: NDArray) -> NDArray:
    """Dense ``Xt A`` (sparse-times-dense when ``Xt`` is sparse)."""
    return np.asarray(Xt @ A)


def _sample_weight(sample_weight: ArrayLike | None, n: int) -> NDArray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"sample_weight has {len(w)} entries for {n} training rows.")
    return w


# ---------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------


class LinearAdapter:
    """Closed-form influence ingredients of a fitted scikit-learn linear model.

    Parameters
    ----------
    estimator : LinearRegression, Ridge or LogisticRegression
        Fitted final model.
    X : array-like of shape (n_train, n_features)
        Training inputs as given to the whole model (before ``preprocess``).
    y : array-like of shape (n_train,) or (n_train, n_targets)
        Training targets.
    preprocess : transformer or None, default=None
        Fitted preprocessing, treated as fixed (the steps of a ``Pipeline``
        before ``estimator``).
    X_features : ndarray, sparse matrix or None, default=None
        ``preprocess.transform(X)`` when the caller already has it.
    sample_weight : array-like of shape (n_train,) or None, default=None
        The weights the model was fitted with.
    batch_size : int or None, default=None
        Rows per block of the Kronecker statistics (whose activation blocks
        are dense); ``None`` sizes them from the memory budget.  The closed
        forms are otherwise vectorised over all rows.
    verbose : int, default=0
        Ignored (a uniform adapter interface).
    n_objective : int or None, default=None
        The ``n`` the training objective divides by, when these rows are one
        block of a larger training set (the penalty ``1/(C n)``, ``alpha/n``
        and each row's penalty share are the whole set's); ``None``: the
        number of rows given.

    Attributes
    ----------
    n_params, n_train, n_outputs : int
    is_classifier : bool
    classes : ndarray or None
    penalty : ndarray of shape (n_params,)
    null_basis : ndarray of shape (n_params, k)
        Orthonormal directions along which the objective is exactly flat
        (multinomial symmetry on unpenalised columns); empty otherwise.
    """

    def __init__(
        self,
        estimator: Any,
        X: ArrayLike,
        y: ArrayLike,
        *,
        preprocess: Any = None,
        X_features: Any = None,
        sample_weight: ArrayLike | None = None,
        batch_size: int | None = None,
        verbose: int = 0,
        n_objective: int | None = None,
    ) -> None:
        self.estimator = estimator
        self.preprocess = preprocess
        self.X_features = self._features(X) if X_features is None else X_features
        if sparse.issparse(self.X_features):  # any format in, canonical CSR held
            self.X_features = model_features(None, self.X_features)
        self.y = np.asarray(y)
        n, d = self.X_features.shape
        self.n_train = n
        n_obj = n if n_objective is None else int(n_objective)
        est = estimator
        self.fit_intercept = bool(getattr(est, "fit_intercept", True))
        spec = _objective(est, n_obj)
        self._spec = spec
        self._loss = spec.loss
        self.classes = spec.classes
        self.is_classifier = spec.classes is not None
        #: The training gradient that predicts a refit without the point at the
        #: same hyper-parameters: "loss" or "total" (see ``_Objective``).
        self.removal_gradient = spec.removal
        lam, lam_b = spec.lam, spec.lam_b
        self.weights = np.ones(n)
        if self.is_classifier:
            self._codes = self._encode(self.y)
            self._class_weight = _class_weights(
                est, self._codes, _sample_weight(sample_weight, n)
            ).astype(np.float64)
            self.weights = self._class_weight[self._codes]
        self.sample_weight = _sample_weight(sample_weight, n)
        #: Each row's share of the penalty when it is removed ("total").
        self._share = np.ones(n)
        if self.sample_weight is not None:
            self.weights = self.weights * self.sample_weight
            if spec.share_by_weight:
                total = self.sample_weight.sum()
                self._share = self.sample_weight * n_obj / total
                # the GLM penalty alpha sits on the normalised-weight scale
                lam = lam * total / n_obj
        coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
        if coef.shape[1] != d:
            raise ValueError(
                f"The model has {coef.shape[1]} coefficients per output but the "
                f"(preprocessed) training data has {d} features."
            )
        self.n_outputs = K = coef.shape[0]
        cols = [coef]
        if self.fit_intercept:
            cols.append(
                np.reshape(np.asarray(est.intercept_, dtype=np.float64), (K, 1))
            )
        self._W = np.hstack(cols)  # (K, d~)
        self._dt = self._W.shape[1]
        self.n_params = K * self._dt
        pen = np.empty((K, self._dt))
        pen[:, :d] = np.reshape(lam, (-1, 1)) if np.ndim(lam) else lam
        if self.fit_intercept:
            pen[:, d] = lam_b
        self.penalty = pen.ravel()
        self.null_basis = self._null_basis(pen)
        self._Xt = self._augment(self.X_features)
        self._T = self._targets(self.y, self._codes if self.is_classifier else None)
        self._Z = mul(self._Xt, self._W.T)
        self._batch_size = batch_size

    # -- data plumbing ------------------------------------------------------

    def _features(self, X: ArrayLike) -> NDArray:
        return model_features(self.preprocess, X)

    def _augment(self, F: NDArray) -> NDArray:
        return with_intercept_column(F, self.fit_intercept)

    def _encode(self, y: ArrayLike) -> NDArray:
        return encode_labels(self.classes, y)

    def _targets(self, y: ArrayLike | None, codes: NDArray | None = None) -> NDArray:
        if self.is_classifier:
            codes = self._encode(y) if codes is None else codes
            return _encode_targets(self._spec.encoding, codes, len(self.classes))
        t = check_array(
            np.asarray(y), ensure_2d=False, dtype=np.float64, input_name="y"
        ).reshape(len(y), -1)
        if t.shape[1] != self.n_outputs:
            raise ValueError(
                f"y has {t.shape[1]} targets but the model has {self.n_outputs}."
            )
        return t

    def _null_basis(self, pen: NDArray) -> NDArray:
        K, dt = pen.shape
        if not isinstance(self._loss, _MultinomialLoss):
            return np.zeros((K * dt, 0))
        free = np.flatnonzero(np.all(pen == 0.0, axis=0))
        N = np.zeros((K, dt, len(free)))
        N[:, free, np.arange(len(free))] = 1.0 / math.sqrt(K)
        return N.reshape(K * dt, len(free))

    def _outer(self, R: NDArray, Xt: Any) -> NDArray:
        """Per-sample ``r_i (x) x~_i`` as dense rows of shape (m, K d~)."""
        return row_outer(R, Xt)

    def _query(self, X: ArrayLike) -> tuple[Any, NDArray]:
        Xt = self._augment(self._features(X))
        return Xt, mul(Xt, self._W.T)

    def _residuals(self, rows: Any, labels: Any = None) -> tuple[Any, NDArray]:
        """``X~`` at ``rows`` and the weighted residuals ``w_i r_i`` (b, K),
        the rows relabelled first when ``labels`` is given."""
        Xt, Z, T = self._Xt[rows], self._Z[rows], self._T[rows]
        w = self.weights[rows]
        if labels is not None:
            if not self.is_classifier:
                raise ValueError("Relabelling needs a classifier.")
            codes = np.broadcast_to(np.asarray(labels, dtype=np.intp), (len(Z),))
            T = self._targets(None, codes)
            w = self._class_weight[codes]
            if self.sample_weight is not None:
                w = w * self.sample_weight[rows]
        return Xt, self._loss.residual(Z, T) * w[:, None]

    # -- the ModelAdapter interface ------------------------------------------

    def params(self) -> NDArray:
        """The flat parameter vector ``theta = [coef_, intercept_].ravel()``."""
        return self._W.ravel().copy()

    def loss(self, X: ArrayLike, y: ArrayLike) -> NDArray:
        """Per-sample loss (no penalty, no class weight) of shape (m,)."""
        _, Z = self._query(X)
        return self._loss.loss(Z, self._targets(y))

    def prediction(self, X: ArrayLike) -> NDArray:
        """Scalar prediction: ``y_hat`` (regression; the mean ``mu`` of a GLM) or
        ``-loss`` at the predicted class (``log p(predicted class)`` for the
        likelihood models; for ``RidgeClassifier`` the negated squared distance
        of the decision values to the predicted class's {-1, +1} code)."""
        _, Z = self._query(X)
        if not self.is_classifier:
            self._check_single_output()
            return self._loss.mean(Z)[0][:, 0]
        return -self._loss.loss(Z, self._predicted_targets(Z))

    def loss_grads(self, X: ArrayLike, y: ArrayLike) -> NDArray:
        """Per-sample loss gradients of shape (m, n_params)."""
        Xt, Z = self._query(X)
        return self._outer(self._loss.residual(Z, self._targets(y)), Xt)

    def prediction_grads(self, X: ArrayLike) -> NDArray:
        """Gradients of :meth:`prediction`, shape (m, n_params)."""
        Xt, Z = self._query(X)
        if not self.is_classifier:
            self._check_single_output()
            return self._outer(self._loss.mean(Z)[1][:, :1], Xt)
        return -self._outer(self._loss.residual(Z, self._predicted_targets(Z)), Xt)

    def train_grads(
        self, rows: Any = slice(None), *, total: bool = False, labels: Any = None
    ) -> NDArray:
        """Weighted training gradients ``w_i grad loss_i`` of shape (b, n_params).

        With ``total=True`` the row's share of the penalty gradient,
        ``share_i * penalty * theta``, is added (Koh & Liang's "total"
        per-sample gradient; the share is 1, or ``n w_i / sum(w)`` for a GLM,
        whose penalty is on the scale of normalised sample weights).  With ``labels``
        (class indices, one per row or one for all) the rows are relabelled
        first, class weight included: the gradient a label change would give.
        """
        Xt, R = self._residuals(rows, labels)
        G = self._outer(R, Xt)
        if total:
            G += self._share[rows][:, None] * (self.penalty * self.params())
        return G

    def train_grad_products(
        self, Q: NDArray, rows: Any = slice(None), *, total: bool = False
    ) -> NDArray:
        """``train_grads(rows, total=total) @ Q`` without the gradient block.

        With ``g_i = w_i r_i (x) x~_i``, ``G Q = sum_k diag(R[:, k]) (X~ Q_k)``
        where ``Q_k`` (d~, k) are the rows of ``Q`` that belong to output
        ``k``: one (sparse-times-dense) product ``X~ [Q_1 ... Q_K]``, no
        ``(b, n_params)`` temporary.

        Parameters
        ----------
        Q : ndarray of shape (n_params, k) or (n_params,)
            The block to multiply.
        rows : slice or array of int, default=slice(None)
            Training rows.
        total : bool, default=False
            Add each row's share of the penalty gradient (``train_grads``).

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
        K, dt, k = self.n_outputs, self._dt, Q2.shape[1]
        Xt, R = self._residuals(rows)
        Qk = Q2.reshape(K, dt, k).transpose(1, 0, 2).reshape(dt, K * k)
        P = mul(Xt, Qk).reshape(len(R), K, k)
        out = np.einsum("bk,bkm->bm", R, P)
        if total:
            out += self._share[rows][:, None] * ((self.penalty * self.params()) @ Q2)
        return out[:, 0] if Q.ndim == 1 else out

    def train_grad_sq_norms(self, rows: Any = slice(None)) -> NDArray:
        """``||w_i r_i (x) x~_i||^2 = ||w_i r_i||^2 ||x~_i||^2`` per row, shape
        (b,): the stationarity check's per-sample scale without a
        ``(b, n_params)`` gradient block (sparse rows stay sparse)."""
        Xt, R = self._residuals(rows)
        xsq = np.asarray(squared(Xt).sum(axis=1), dtype=np.float64).reshape(-1)
        return np.einsum("bk,bk->b", R, R) * xsq

    def train_prediction_grads(self, rows: Any = slice(None)) -> NDArray:
        """:meth:`prediction_grads` at training rows, shape (b, n_params)."""
        Xt, Z = self._Xt[rows], self._Z[rows]
        if not self.is_classifier:
            self._check_single_output()
            return self._outer(self._loss.mean(Z)[1][:, :1], Xt)
        return -self._outer(self._loss.residual(Z, self._predicted_targets(Z)), Xt)

    def input_grad_products(self, Q: NDArray, rows: Any = slice(None)) -> NDArray:
        """``d/dx_i <q_j, g_i>`` for query vectors ``Q`` (m, n_params).

        Returns shape (m, b, n_features): how training point ``i``'s weighted
        gradient, projected on ``q_j``, moves with its input features (the
        mixed derivative ``grad_x grad_theta loss``).  Closed form: with
        ``g = w r (x) x~`` and ``dr/dx_a = A W[:, a]``,
        ``d<q, g>/dx_a = w [ (A W[:, a])^T (Q x~) + r^T Q[:, a] ]``.
        """
        if self.preprocess is not None:
            raise ValueError(
                "Input perturbation is taken with respect to the model's own "
                "inputs; fit the InfluenceScorer on preprocessed features instead "
                "of a Pipeline."
            )
        Xt, Z, T = self._Xt[rows], self._Z[rows], self._T[rows]
        w = self.weights[rows]
        d = self.X_features.shape[1]
        K, dt = self.n_outputs, self._dt
        Qm = np.asarray(Q).reshape(len(Q), K, dt)  # (m, K, d~)
        QX = mul(Xt, Qm.transpose(2, 1, 0).reshape(dt, -1))  # (b, K m)
        QX = QX.reshape(len(Z), K, len(Q))  # (b, K, m)
        AQX = self._loss.hess_apply(Z, QX, T)  # (b, K, m)
        W = self._W[:, :d]  # (K, d)
        term1 = np.einsum("bkm,ka->mba", AQX, W)
        R = self._loss.residual(Z, T)  # (b, K)
        term2 = np.einsum("bk,mka->mba", R, Qm[:, :, :d])
        return (term1 + term2) * w[None, :, None]

    def objective_grad(self) -> NDArray:
        """Gradient of ``J`` at the fitted parameters, off the null directions."""
        R = self._loss.residual(self._Z, self._T) * self.weights[:, None]
        g = tmul(self._Xt, R).T.ravel() / self.n_train + self.penalty * self.params()
        N = self.null_basis
        return g - N @ (N.T @ g)

    def hessian_matvec(self, V: NDArray, rows: Any = None) -> NDArray:
        """``(H + N N^T) V`` for ``V`` of shape (n_params, m), matrix-free.

        With ``rows`` (a slice or index array) the data term averages over
        those training rows only -- the minibatch Hessian of stochastic
        solvers; the penalty and the flat-direction projector are kept.
        """
        V = np.asarray(V, dtype=np.float64)
        squeeze = V.ndim == 1
        V2 = V.reshape(self.n_params, -1)
        sel = slice(None) if rows is None else rows
        Xt, Z, w, T = self._Xt[sel], self._Z[sel], self.weights[sel], self._T[sel]
        K, dt, m, b = self.n_outputs, self._dt, V2.shape[1], len(Z)
        # X~ V_k for every output k in one product, then back: (sparse) GEMMs
        U = mul(Xt, V2.reshape(K, dt, m).transpose(1, 0, 2).reshape(dt, K * m))
        AU = self._loss.hess_apply(Z, U.reshape(b, K, m), T)
        AU *= w[:, None, None]
        out = tmul(Xt, AU.reshape(b, K * m)).reshape(dt, K, m)
        out = out.transpose(1, 0, 2).reshape(K * dt, m) / b
        out += self.penalty[:, None] * V2
        N = self.null_basis
        if N.shape[1]:
            out += N @ (N.T @ V2)
        return out[:, 0] if squeeze else out

    def hessian_operator(self) -> LinearOperator:
        """``H + N N^T`` as a symmetric ``scipy`` ``LinearOperator``."""
        p = self.n_params
        return LinearOperator(
            (p, p),
            matvec=self.hessian_matvec,
            matmat=self.hessian_matvec,
            rmatvec=self.hessian_matvec,
            dtype=np.float64,
        )

    def ggn_operator(self) -> LinearOperator:
        """The Gauss-Newton matrix, which equals the Hessian for these models."""
        return self.hessian_operator()

    def hessian_diagonal(self) -> NDArray:
        """Diagonal of ``H + N N^T`` of shape (n_params,), closed form."""
        A = self._loss.hess_entries(self._Z, self._T) * self.weights[:, None, None]
        diag_A = np.einsum("nkk->nk", A)  # (n, K)
        d = tmul(squared(self._Xt), diag_A).T.ravel() / self.n_train + self.penalty
        N = self.null_basis
        return d + np.sum(N**2, axis=1)

    def data_hessian_sum(self, rows: Any = slice(None)) -> NDArray:
        """``sum_{i in rows} w_i Hessian(loss_i)``, dense, no penalty.

        Refused before allocating when the dense ``p x p`` matrix is over the
        dense memory budget; sparse features go through a sparse product.
        """
        K, dt = self.n_outputs, self._dt
        check_dense_fits(self.n_params, "data Hessian")
        Xt = self._Xt[rows]
        A = self._loss.hess_entries(self._Z[rows], self._T[rows])
        A = A * self.weights[rows][:, None, None]
        H = np.zeros((K, dt, K, dt))
        for k in range(K):
            for m in range(k, K):
                if not np.any(A[:, k, m]):
                    continue
                block = gram(Xt, A[:, k, m])
                H[k, :, m, :] = block
                H[m, :, k, :] = block.T
        return H.reshape(self.n_params, self.n_params)

    def row_curvature(self, rows: Any = slice(None)) -> tuple[NDArray, NDArray]:
        """Each row's curvature as ``J_i^T M_i J_i``: its output Jacobian and
        weighted output Hessian.

        Parameters
        ----------
        rows : slice or array of int, default=slice(None)
            Training rows.

        Returns
        -------
        J : ndarray of shape (b, n_outputs, n_params)
            ``dz_i / dtheta`` (``I_K (x) x~_i``).
        M : ndarray of shape (b, n_outputs, n_outputs)
            ``w_i d^2 loss_i / dz^2``, so that ``w_i Hessian(loss_i) =
            J_i^T M_i J_i`` (the Gauss-Newton form, exact here).
        """
        Xt, Z, T = self._Xt[rows], self._Z[rows], self._T[rows]
        K, dt, b = self.n_outputs, self._dt, len(Z)
        M = self._loss.hess_entries(Z, T) * self.weights[rows][:, None, None]
        J = np.zeros((b, K, K, dt))
        J[:, np.arange(K), np.arange(K), :] = dense_rows(Xt)[:, None, :]
        return J.reshape(b, K, K * dt), M

    def residual_parts(self) -> dict[str, Any]:
        """Residuals of a single-output model, for regression diagnostics.

        Returns
        -------
        parts : dict
            ``"response"``: ``y - mu`` (the label's 0/1 code for a binary
            likelihood classifier, its {-1, +1} code for ``RidgeClassifier``);
            ``"pearson"``: the response residual over ``sqrt(Var(mu))``
            (``Var = 1`` for least squares, ``mu (1 - mu)`` binomial,
            ``mu^p`` Tweedie) times ``sqrt(w_i)``; ``"dmu_dz"``: the mean's
            derivative in the linear predictor; ``"fixed_dispersion"``: the
            family's dispersion is 1 (binomial, Poisson) rather than
            estimated.
        """
        if self.n_outputs != 1:
            raise ValueError(
                "Residual diagnostics need a single-output model; this one has "
                f"{self.n_outputs} outputs (a multiclass classifier or several "
                "targets). Leverage, Cook's distance and self-influence remain "
                "available."
            )
        Z, t = self._Z[:, 0], self._T[:, 0]
        loss = self._loss
        if isinstance(loss, _BinomialLoss):
            mu = expit(Z)
            var, dmu, fixed = mu * (1 - mu), mu * (1 - mu), True
        elif isinstance(loss, _TweedieLoss):
            mu, dmu = (a[:, 0] for a in loss.mean(Z[:, None]))
            var, fixed = mu**loss.power, loss.power == 1
        else:
            mu, var, dmu, fixed = Z, np.ones_like(Z), np.ones_like(Z), False
        e = t - mu
        return {
            "response": e,
            "pearson": e / np.sqrt(var) * np.sqrt(self.weights),
            "dmu_dz": dmu,
            "fixed_dispersion": fixed,
        }

    def parameter_names(self, feature_names: Any = None) -> list[str]:
        """A name per parameter: ``<feature>`` and ``intercept``, prefixed by
        the class (or output index) when there are several outputs."""
        d = self.X_features.shape[1]
        names = list(feature_names) if feature_names is not None else None
        if names is None or len(names) != d:
            names = [f"x{j}" for j in range(d)]
        names = [str(f) for f in names] + (["intercept"] if self.fit_intercept else [])
        if self.n_outputs == 1:
            return names
        heads = self.classes if self.classes is not None else range(self.n_outputs)
        return [f"{k}_{f}" for k in heads for f in names]

    def hessian_matrix(self) -> NDArray:
        """Dense ``H + N N^T`` of shape (n_params, n_params), closed form."""
        H = self.data_hessian_sum() / self.n_train
        H[np.diag_indices_from(H)] += self.penalty
        N = self.null_basis
        if N.shape[1]:
            H += N @ N.T
        return H

    def ggn_matrix(self) -> NDArray:
        """Dense Gauss-Newton matrix; equal to :meth:`hessian_matrix` here."""
        return self.hessian_matrix()

    def retrain(
        self, keep: NDArray, *, warm_start: bool = True, random_state: Any = None
    ) -> LinearAdapter:
        """Refit the final model on the kept training rows, tightly.

        The preprocessing stays fixed.  ``warm_start=True`` starts from the
        current parameters (solvers that support it); otherwise from scratch.
        Iterative solvers run with ``tol=1e-10`` so the refit is a ground truth.

        Parameters
        ----------
        keep : ndarray of bool of shape (n_train,) or of int
            Rows to keep.
        warm_start : bool, default=True
            Start from the current parameters.
        random_state : int, RandomState or None, default=None
            Passed to estimators that have one (a seed changes nothing for
            the convex solvers here, but keeps the interface uniform).

        Returns
        -------
        adapter : LinearAdapter
            The adapter of the refitted model on the kept rows.
        """
        Xk, yk = self.X_features[keep], self.y[keep]
        if self.is_classifier and len(np.unique(yk)) != len(self.classes):
            raise ValueError("Retraining on these rows would drop a class entirely.")
        sw = None if self.sample_weight is None else self.sample_weight[keep]
        if self._spec.minimize_refit:
            return self._minimize_on(Xk, yk, sw, warm_start=warm_start)
        if self._spec.refit is not None:
            # a CV model: refit the estimator it selected, hyper-parameters fixed
            est = self._spec.refit()
            if warm_start and "warm_start" in est.get_params():
                est.coef_ = np.array(self.estimator.coef_, copy=True)
                est.intercept_ = np.array(self.estimator.intercept_, copy=True)
        else:
            est = copy.deepcopy(self.estimator) if warm_start else clone(self.estimator)
        params = est.get_params()
        tight = {"tol": RETRAIN_TOL}
        if "max_iter" in params:
            tight["max_iter"] = max(params["max_iter"] or 0, RETRAIN_MAX_ITER)
        if "warm_start" in params:
            tight["warm_start"] = warm_start
        if random_state is not None:
            tight["random_state"] = random_state
        est.set_params(**{k: v for k, v in tight.items() if k in params})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(Xk, yk, **({} if sw is None else {"sample_weight": sw}))
        return LinearAdapter(
            est,
            None,
            yk,
            preprocess=self.preprocess,
            X_features=Xk,
            sample_weight=sw,
        )

    def _minimize_on(
        self, Xk: NDArray, yk: NDArray, sw: NDArray | None, *, warm_start: bool
    ) -> LinearAdapter:
        """The minimiser of the same objective on other rows, by L-BFGS.

        The ground truth for models whose own solver is stochastic (SGD):
        their refit lands anywhere near the optimum, the objective's
        minimiser is what influence predicts.
        """
        new = LinearAdapter(
            copy.deepcopy(self.estimator),
            None,
            yk,
            preprocess=self.preprocess,
            X_features=Xk,
            sample_weight=sw,
        )
        K, dt, m = new.n_outputs, new._dt, new.n_train

        def objective(theta):
            Z = mul(new._Xt, theta.reshape(K, dt).T)
            R = new._loss.residual(Z, new._T) * new.weights[:, None]
            value = new.weights @ new._loss.loss(Z, new._T) / m
            value += 0.5 * theta @ (new.penalty * theta)
            return value, tmul(new._Xt, R).T.ravel() / m + new.penalty * theta

        start = self.params() if warm_start else np.zeros(self.n_params)
        res = optimize.minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": RETRAIN_MAX_ITER, "gtol": RETRAIN_TOL, "ftol": 0.0},
        )
        coef, intercept = new.unravel(res.x)
        est = new.estimator
        est.coef_ = coef.reshape(np.shape(est.coef_)).copy()
        if intercept is not None:
            est.intercept_ = intercept.reshape(np.shape(est.intercept_)).copy()
        return new._with_params(res.x)

    def response(
        self,
        remove: int | None,
        *,
        damping: float,
        kind: str = "pbrf",
        epsilon: float = 1.0,
    ) -> LinearAdapter:
        """The model minimising a response objective around the fitted one.

        With ``theta_s`` the fitted parameters, ``m = remove`` and ``lam =
        damping``:

        * ``"pbrf"`` (Bae et al. 2022): ``(1/n) sum_i w_i D_loss(z_i(theta),
          z_i(theta_s)) - (1/n) w_m loss_m(theta) + (1/2) (theta - theta_s)^T
          diag(penalty + lam) (theta - theta_s)``, ``D`` the Bregman divergence
          of the loss in output space (the penalty's own Bregman divergence
          is the quadratic term);
        * ``"proximal"``: ``J(theta) - (1/n) w_m loss_m(theta) + (lam/2)
          ||theta - theta_s||^2``.

        Solved by full-batch L-BFGS from ``theta_s``.  ``remove=None`` keeps
        every point (the reference response); ``epsilon`` scales the removed
        point's term (the fraction of it removed).

        Returns
        -------
        adapter : LinearAdapter
            The same model and data at the response parameters, with
            ``response_info`` (``grad_norm``: the final gradient norm relative
            to the initial one, ``n_iter``, ``converged``; ``curvature`` NaN).
        """
        if kind not in ("pbrf", "proximal"):
            raise ValueError(f"kind must be 'pbrf' or 'proximal'; got {kind!r}.")
        n, K, dt = self.n_train, self.n_outputs, self._dt
        theta_s, Zs, pen = self.params(), self._Z, self.penalty
        Rs = self._loss.residual(Zs, self._T)
        loss_s = self._loss.loss(Zs, self._T)
        w = self.weights

        def objective(theta):
            Z = mul(self._Xt, theta.reshape(K, dt).T)
            R = self._loss.residual(Z, self._T)
            diff = theta - theta_s
            if kind == "pbrf":
                D = self._loss.loss(Z, self._T) - loss_s - np.sum(Rs * (Z - Zs), axis=1)
                value = w @ D / n + 0.5 * diff @ ((pen + damping) * diff)
                grad = tmul(self._Xt, w[:, None] * (R - Rs)).T.ravel() / n
                grad += (pen + damping) * diff
            else:
                value = w @ self._loss.loss(Z, self._T) / n + 0.5 * theta @ (
                    pen * theta
                )
                value += 0.5 * damping * diff @ diff
                grad = tmul(self._Xt, w[:, None] * R).T.ravel() / n
                grad += pen * theta + damping * diff
            if remove is not None:
                zm, tm = Z[remove : remove + 1], self._T[remove : remove + 1]
                value -= epsilon * w[remove] * self._loss.loss(zm, tm)[0] / n
                rm = self._loss.residual(zm, tm)
                xm = self._Xt[remove : remove + 1]
                grad -= epsilon * w[remove] * self._outer(rm, xm)[0] / n
            return value, grad

        res = optimize.minimize(
            objective,
            theta_s,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": RETRAIN_MAX_ITER, "gtol": RETRAIN_TOL, "ftol": 0.0},
        )
        g0 = np.linalg.norm(objective(theta_s)[1])
        g1 = np.linalg.norm(objective(res.x)[1])
        new = self._with_params(res.x)
        new.response_info = {
            "grad_norm": float(g1 / g0) if g0 > 0 else 0.0,
            "n_iter": int(res.nit),
            "converged": bool(res.success or g1 <= RETRAIN_TOL),
            "curvature": float("nan"),
        }
        return new

    def with_data(self, X: ArrayLike, y: ArrayLike) -> LinearAdapter:
        """The same model (same parameters) with ``(X, y)`` as its training set.

        The objective is the estimator's own on the new data: the L2 term
        keeps its scikit-learn scale (``C`` or ``alpha`` per sample sum), so
        on the mean-loss scale it is ``1 / (C m)`` for ``m`` new rows.  Used
        to fine-tune on, and take the curvature of, a validation set (VM/FVM).
        """
        new = LinearAdapter(self.estimator, X, y, preprocess=self.preprocess)
        return new._with_params(self.params())

    def batch_objective_grad(self, theta: NDArray, rows: Any) -> NDArray:
        """Gradient at ``theta`` of the objective with the data term averaged
        over ``rows`` only (a minibatch gradient), shape (n_params,)."""
        W = np.reshape(theta, (self.n_outputs, self._dt))
        Xt = self._Xt[rows]
        R = self._loss.residual(mul(Xt, W.T), self._T[rows]) * self.weights[rows, None]
        return tmul(Xt, R).T.ravel() / n_rows(Xt) + self.penalty * theta

    def param_blocks(self) -> list[tuple[slice, tuple[int, ...]]]:
        """``(slice of the flat vector, shape)`` per parameter tensor: one
        ``(n_outputs, n_features [+ 1])`` matrix, intercept as its last column."""
        return [(slice(0, self.n_params), (self.n_outputs, self._dt))]

    def _with_params(self, theta: NDArray) -> LinearAdapter:
        new = copy.copy(self)
        new._W = np.reshape(theta, (self.n_outputs, self._dt)).copy()
        new._Z = mul(self._Xt, new._W.T)
        return new

    # -- helpers --------------------------------------------------------------

    def _predicted_targets(self, Z: NDArray) -> NDArray:
        if Z.shape[1] == 1:  # one decision value: positive = classes[1]
            codes = (Z[:, 0] > 0).astype(np.intp)
        else:
            codes = np.argmax(Z, axis=1)
        return _encode_targets(self._spec.encoding, codes, len(self.classes))

    def _check_single_output(self) -> None:
        if self.n_outputs != 1:
            raise ValueError(
                "target='prediction' needs a scalar output; this regressor has "
                f"{self.n_outputs} targets. Use target='loss'."
            )

    def unravel(self, theta: NDArray) -> tuple[NDArray, NDArray | None]:
        """Split a parameter vector into ``(coef, intercept)`` like the model's."""
        W = np.reshape(theta, (self.n_outputs, self._dt))
        if self.fit_intercept:
            return W[:, :-1], W[:, -1]
        return W, None

    # -- capabilities (skinfluence.models._contract) --------------------------

    @property
    def train_indices(self) -> NDArray:
        """Every row of the fit ``X`` is trained on: ``arange(n_train)``."""
        return np.arange(self.n_train)

    def ggn_diagonal(self) -> NDArray:
        """Diagonal of the Gauss-Newton matrix: the Hessian's, closed form."""
        return self.hessian_diagonal()

    def ggn_matvec(self, V: NDArray, rows: Any = None) -> NDArray:
        """``G V``: the Hessian product (``G = H`` for these models)."""
        return self.hessian_matvec(V, rows)

    def with_params(self, theta: NDArray) -> LinearAdapter:
        """The same model and data at the flat parameters ``theta``."""
        return self._with_params(theta)

    def kronecker_layers(self) -> list:
        """The one layer ``[coef_, intercept_]`` as a ``KroneckerLayer``."""
        from ._linear_kronecker import linear_kronecker_layers

        return linear_kronecker_layers(self)

    def layer_statistics(
        self,
        layers: list,
        *,
        fisher: str = "mc",
        n_samples: int = 1,
        random_state: Any = None,
        verbose: int = 0,
    ) -> Any:
        """Stream ``[(x~, u)]`` per row batch: the augmented inputs and the
        output-space pseudo-gradients of the ``fisher`` type."""
        from ._linear_kronecker import linear_layer_statistics

        return linear_layer_statistics(
            self,
            fisher=fisher,
            n_samples=n_samples,
            random_state=random_state,
            verbose=verbose,
        )

    def parameter_blocks(self, by: str = "layer") -> list[tuple[str, NDArray]]:
        """One block (``"layer"``), or coefficients and intercepts (``"tensor"``)."""
        from ._linear_kronecker import linear_parameter_blocks

        return linear_parameter_blocks(self, by)

    def ggn_blocks(self, blocks: list[NDArray], *, verbose: int = 0) -> list[NDArray]:
        """Diagonal blocks of the closed-form Gauss-Newton matrix."""
        from ._linear_kronecker import linear_ggn_blocks

        return linear_ggn_blocks(self, blocks)

    def __repr__(self) -> str:
        return f"LinearAdapter({self.estimator!r})"

    def curvature_sample(self, n_probes: int, random_state: Any = None) -> NDArray:
        """Independent draws from ``N(0, C)``, ``C`` the Hessian operator's matrix.

        ``C = (1/n) sum_i x~_i x~_i^T (x) A_i + diag(penalty) + N N^T`` (what
        :meth:`hessian_matvec` applies; damping excluded), with
        ``A_i = w_i d^2 loss_i / dz^2`` the weighted output Hessian of row
        ``i``.  Each draw is

        ``z = (1/sqrt(n)) sum_i (F_i e_i) (x) x~_i + sqrt(penalty) * u + N v``

        with ``F_i F_i^T = A_i`` (``sqrt(A_i)`` for one output or a diagonal
        ``A_i``; ``V_i diag(sqrt(lambda_i))`` from ``A_i``'s eigenvectors
        otherwise) and standard normal ``e_i`` (``n_outputs`` values), ``u``
        and ``v``; so ``Cov(z) = C`` exactly.  The design enters only through
        ``X~^T M`` products, one per block of probes.

        Parameters
        ----------
        n_probes : int
            Number of independent draws (columns).
        random_state : int, RandomState instance or None, default=None
            Seeds the draws.  They are taken in a fixed order: ``e`` for all
            probes (an array of shape ``(n_probes, n_train, n_outputs)``, in
            blocks of probes), then ``u`` of shape ``(n_probes, n_params)``,
            then ``v`` of shape ``(n_probes, k)`` (only when there are flat
            directions), so the result does not depend on the block size.

        Returns
        -------
        Z : ndarray of shape (n_params, n_probes)

        Raises
        ------
        ValueError
            When some ``A_i`` has a negative eigenvalue beyond rounding (an
            observed Hessian that is not positive semi-definite, e.g.
            ``TweedieRegressor(power=3, link="log")`` where ``y < mu / 2``):
            ``C`` is then not a sum of covariances and has no such factor.
        """
        if (
            isinstance(n_probes, bool)
            or not isinstance(n_probes, (int, np.integer))
            or n_probes < 1
        ):
            raise ValueError(f"n_probes must be an integer >= 1; got {n_probes!r}.")
        from sklearn.utils import check_random_state

        from ..utils._chunks import block_budget, chunks

        rng = check_random_state(random_state)
        n, K, dt, p = self.n_train, self.n_outputs, self._dt, self.n_params
        m = int(n_probes)
        budget = block_budget()  # InfluenceScorer(memory_budget=...) or default

        def output_hessians(r: Any) -> NDArray:
            return (
                self._loss.hess_entries(self._Z[r], self._T[r])
                * (self.weights[r][:, None, None])
            )

        # rows per block of output Hessians and their factors (A, F, V: 3 K^2
        # values a row, plus the block's share of the probes' products)
        rsize = max(1, (budget // 4) // (8 * K * (3 * K + 2 * min(m, 64))))
        # all rows' factors at once when they fit a quarter of the budget,
        # else recomputed per block of probes
        whole = 8 * n * K * (3 * K) <= budget // 4
        diagonal = True

        def spectrum(A: NDArray) -> tuple[NDArray, NDArray | None]:
            if diagonal:
                return np.einsum("nkk->nk", A), None
            return np.linalg.eigh(A)

        def is_diagonal(A: NDArray) -> bool:
            return K == 1 or not np.any(A * (1.0 - np.eye(K)))

        if whole:  # one decomposition serves the scale, the check and F
            A = output_hessians(slice(None))
            diagonal = is_diagonal(A)
            lam_all, V_all = spectrum(A)
            del A
            scale = float(np.max(np.abs(lam_all), initial=0.0))
        else:  # a first pass in row blocks for the scale alone
            scale = 0.0
            for r in chunks(n, rsize):
                A = output_hessians(r)
                diagonal = diagonal and is_diagonal(A)
                lam = np.einsum("nkk->nk", A) if diagonal else np.linalg.eigvalsh(A)
                scale = max(scale, float(np.max(np.abs(lam), initial=0.0)))
        # eigh's rounding, and cancellation in a GLM's second derivative
        tol = 1e3 * np.finfo(np.float64).eps * max(K, 1) * scale

        def build(lam: NDArray, V: NDArray | None, r: Any) -> NDArray:
            """``F_i`` with ``F_i F_i^T = A_i`` for the rows ``r``: (b, K) for
            a diagonal ``A_i``, else (b, K, K)."""
            bad = np.flatnonzero(np.min(lam, axis=1, initial=np.inf) < -tol)
            if bad.size:
                raise ValueError(
                    f"curvature_sample needs every row's weighted output Hessian "
                    f"w_i d^2 loss_i/dz^2 to be positive semi-definite, but rows "
                    f"of {self.estimator!r} have negative curvature (smallest "
                    f"eigenvalue {float(np.min(lam)):.3g}, e.g. row "
                    f"{int(np.arange(n)[r][bad[0]])}): this model's Hessian is an "
                    "observed one that is not a sum of covariances, so it cannot "
                    "be sampled. Compute self-influence exactly (one solve per "
                    "row, or curvature='exact')."
                )
            F = np.sqrt(np.clip(lam, 0.0, None))  # (b, K): A_i = diag(F_i^2)
            if not diagonal:
                F = V * F[:, None, :]  # (b, K, K): F_i F_i^T = V_i diag(lam) V_i^T
            return F

        def factor(r: Any) -> NDArray:
            return build(*spectrum(output_hessians(r)), r)

        # checked before any draw
        F_all = build(lam_all, V_all, slice(None)) if whole else None
        if F_all is None:
            for r in chunks(n, rsize):
                factor(r)
        # probes per block: their normal draws e, (b, n, K), take half the budget
        block = max(1, min(m, (budget // 2) // (8 * n * K)))
        rsize = max(1, (budget // 4) // (8 * K * (3 * K + 2 * block)))
        Z = np.empty((p, m))
        for start in range(0, m, block):
            b = min(block, m - start)
            # drawn in one fixed order, (probe, row, output), whatever the blocks
            E = rng.standard_normal((b, n, K))
            acc = np.zeros((dt, K * b))
            for r in chunks(n, rsize):
                F = F_all[r] if F_all is not None else factor(r)
                Er = E[:, r].transpose(1, 2, 0)  # (rows, K, b)
                M = F[:, :, None] * Er if diagonal else np.matmul(F, Er)
                acc += np.asarray(self._Xt[r].T @ M.reshape(len(M), K * b))
            Z[:, start : start + b] = (
                acc.reshape(dt, K, b).transpose(1, 0, 2).reshape(p, b)
            )
        Z /= math.sqrt(n)
        Z += np.sqrt(self.penalty)[:, None] * rng.standard_normal((m, p)).T
        N = self.null_basis
        if N.shape[1]:
            Z += N @ rng.standard_normal((m, N.shape[1])).T
        return Z


@make_adapter.register(LinearRegression)
@make_adapter.register(Ridge)
@make_adapter.register(RidgeCV)
@make_adapter.register(RidgeClassifier)
@make_adapter.register(RidgeClassifierCV)
@make_adapter.register(LogisticRegression)
@make_adapter.register(SGDClassifier)
@make_adapter.register(SGDRegressor)
@make_adapter.register(PoissonRegressor)
@make_adapter.register(GammaRegressor)
@make_adapter.register(TweedieRegressor)
def _(estimator: Any, X: ArrayLike, y: ArrayLike, **kwargs: Any) -> LinearAdapter:
    return LinearAdapter(estimator, X, y, **kwargs)
