"""Plain torch networks as scikit-learn estimators, trained to an optimum.

``TorchClassifier`` / ``TorchRegressor`` wrap an ``nn.Module`` and a loss and
train them full-batch with L-BFGS by default, so the fitted network sits at a
stationary point of exactly the objective influence differentiates:
``J(theta) = (1/n) sum_i w_i loss_i + (weight_decay / 2) ||theta||^2`` with
``w_i`` the ``sample_weight`` given to ``fit`` (ones by default).  They register
a :class:`TorchAdapter` (and a retrain hook for leave-one-out ground truth).
"""

from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.func import vmap

from ..utils._sklearn_compat import HasMethods, Interval, StrOptions, _fit_context
from ._base import make_adapter
from ._torch import TorchAdapter, reset_parameters

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class _TorchModel(BaseEstimator):
    _parameter_constraints: dict = {
        "module": [HasMethods(["forward", "parameters"]), callable],
        "criterion": [callable, None],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "optimizer": [StrOptions({"lbfgs", "adam"})],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "dtype": [StrOptions(set(_DTYPES))],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        module,
        *,
        criterion=None,
        weight_decay=0.0,
        optimizer="lbfgs",
        lr=None,
        max_iter=500,
        tol=1e-9,
        batch_size=None,
        dtype="float64",
        random_state=None,
    ):
        self.module = module
        self.criterion = criterion
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.lr = lr
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.dtype = dtype
        self.random_state = random_state

    # -- subclass hooks -------------------------------------------------------

    def _default_criterion(self) -> torch.nn.Module:
        raise NotImplementedError

    def _encode(self, y: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _check_outputs(self, z: torch.Tensor, yt: torch.Tensor) -> None:
        raise NotImplementedError

    # -- training ---------------------------------------------------------------

    def _objective(self, module, X, y, w=None) -> torch.Tensor:
        if w is None:
            loss = self.criterion_(module(X), y)
        else:
            # the criterion on one row at a time, as the adapter reads it
            def one(z, t):
                return self.criterion_(z[None], t[None])

            loss = (vmap(one)(module(X), y) * w).sum() / len(X)
        if self.weight_decay:
            sq = sum((p**2).sum() for p in module.parameters() if p.requires_grad)
            loss = loss + 0.5 * self.weight_decay * sq
        return loss

    def _train(self, X: torch.Tensor, y: torch.Tensor, w=None) -> None:
        params = [p for p in self.module_.parameters() if p.requires_grad]
        self.module_.train()
        if self.optimizer == "lbfgs":
            opt = torch.optim.LBFGS(
                params,
                lr=self.lr or 1.0,
                max_iter=self.max_iter,
                tolerance_grad=self.tol,
                tolerance_change=0.0,
                history_size=50,
                line_search_fn="strong_wolfe",
            )

            def closure():
                opt.zero_grad()
                loss = self._objective(self.module_, X, y, w)
                loss.backward()
                return loss

            opt.step(closure)
            self.n_iter_ = opt.state[opt._params[0]].get("n_iter", 0)
        else:
            gen = torch.Generator().manual_seed(self._seed)
            opt = torch.optim.Adam(params, lr=self.lr or 1e-3)
            bs = self.batch_size or len(X)
            for _ in range(self.max_iter):
                for idx in torch.randperm(len(X), generator=gen).split(bs):
                    opt.zero_grad()
                    wb = None if w is None else w[idx]
                    self._objective(self.module_, X[idx], y[idx], wb).backward()
                    opt.step()
            self.n_iter_ = self.max_iter
        self.module_.eval()
        grad_norm = self._grad_norm(X, y, w)
        if self.optimizer == "lbfgs" and grad_norm > max(self.tol, 1e-6) * 10:
            warnings.warn(
                f"L-BFGS stopped with gradient norm {grad_norm:.2g}; raise max_iter "
                "for an optimum (influence assumes one).",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _grad_norm(self, X, y, w=None) -> float:
        params = [p for p in self.module_.parameters() if p.requires_grad]
        grads = torch.autograd.grad(self._objective(self.module_, X, y, w), params)
        return float(torch.sqrt(sum((g**2).sum() for g in grads)))

    def _fit_tensors(self, X, y, *, warm_start: bool = False, sample_weight=None):
        self._seed = int(np.random.RandomState(self.random_state).randint(2**31 - 1))
        if self.random_state is None:
            return self._fit_seeded(X, y, warm_start, sample_weight, seed=None)
        # a seeded fit (initialisation, lazy layers, dropout) on a forked
        # generator: the global torch generator is left as the caller had it
        with torch.random.fork_rng(devices=[]):
            return self._fit_seeded(X, y, warm_start, sample_weight, seed=self._seed)

    def _fit_seeded(self, X, y, warm_start, sample_weight, *, seed):
        torch_dtype = _DTYPES[self.dtype]
        Xt = torch.as_tensor(np.asarray(X), dtype=torch_dtype)
        yt = self._encode(np.asarray(y))
        if seed is not None:
            torch.manual_seed(seed)
        if not warm_start:
            self.criterion_ = copy.deepcopy(self.criterion or self._default_criterion())
            self.module_ = self._new_module(Xt.shape[1], yt).to(torch_dtype)
            if seed is not None:
                reset_parameters(self.module_)
        with torch.no_grad():
            try:
                z = self.module_(Xt[:1])
            except RuntimeError as exc:
                raise ValueError(
                    f"The module cannot be applied to X with {Xt.shape[1]} "
                    f"features ({exc}). Build it for {Xt.shape[1]} input features, "
                    "or pass a callable module(n_features, n_outputs)."
                ) from exc
            self._check_outputs(z, yt)
        w = None
        if sample_weight is not None:
            w = torch.as_tensor(np.asarray(sample_weight), dtype=torch_dtype)
        self._train(Xt, yt, w)
        return self

    def _new_module(self, n_features: int, yt: torch.Tensor) -> torch.nn.Module:
        """A copy of ``module``, or ``module(n_features, n_outputs)`` built."""
        if isinstance(self.module, torch.nn.Module):
            return copy.deepcopy(self.module)
        n_outputs = self._n_outputs(yt)
        module = self.module(n_features, n_outputs)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(
                f"module(n_features={n_features}, n_outputs={n_outputs}) must return "
                f"a torch.nn.Module; got {type(module).__name__}."
            )
        return module

    def _forward(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64, allow_nd=True)
        with torch.no_grad():
            Xt = torch.as_tensor(X, dtype=_DTYPES[self.dtype])
            return self.module_(Xt).double().numpy()

    def _check_weights(self, sample_weight, X):
        if sample_weight is None:
            return None
        w = check_array(
            sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
        )
        if w.ndim != 1 or len(w) != len(X):
            raise ValueError(
                f"sample_weight must have shape ({len(X)},), one weight per row of "
                f"X; got {w.shape}."
            )
        if np.any(w < 0):
            raise ValueError(
                f"sample_weight must be non-negative; got a minimum of {w.min():.3g}."
            )
        if not np.any(w > 0):
            raise ValueError(
                "sample_weight is zero for every row; give at least one row a "
                "positive weight."
            )
        return w

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.optimizer == "adam" and self.random_state is None
        return tags


class TorchClassifier(ClassifierMixin, _TorchModel):
    """A torch classification network as a scikit-learn classifier.

    The module maps ``(n, n_features)`` float inputs (or any ``(n, ...)``
    it takes, e.g. images ``(n, channels, height, width)`` for a
    convolutional network) to ``(n, n_classes)`` logits; the loss defaults
    to ``CrossEntropyLoss``.  Training minimises
    ``(1/n) sum_i w_i loss_i + (weight_decay/2) ||theta||^2`` (``w_i`` the
    ``sample_weight``, ones by default) full-batch with L-BFGS
    (or Adam), so the fitted network is at an optimum of the objective that
    :class:`~skinfluence.InfluenceScorer` differentiates.

    Parameters
    ----------
    module : torch.nn.Module or callable
        The network, with its initial weights (copied, never trained in
        place), mapping ``(n, n_features)`` to ``(n, n_classes)`` logits; or
        a callable ``module(n_features, n_outputs) -> nn.Module`` (e.g. the
        class ``torch.nn.Linear``) that builds it for the data at each fit.
        With ``random_state`` set, weights are re-initialised by each
        layer's ``reset_parameters`` under that seed.
    criterion : torch loss or None, default=None
        Mean-reduced loss on (logits, class index); ``None`` means
        ``CrossEntropyLoss()``.
    weight_decay : float, default=0.0
        L2 strength on the mean-loss scale, on every trainable parameter.
    optimizer : {"lbfgs", "adam"}, default="lbfgs"
        Full-batch L-BFGS with strong-Wolfe line search (reaches an optimum),
        or Adam over minibatches.
    lr : float or None, default=None
        Step size (L-BFGS: 1.0; Adam: 1e-3).
    max_iter : int, default=500
        L-BFGS iterations, or Adam epochs.
    tol : float, default=1e-9
        L-BFGS gradient tolerance.
    batch_size : int or None, default=None
        Adam minibatch size (``None``: full batch).
    dtype : {"float64", "float32"}, default="float64"
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network.
    criterion_ : torch loss
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    n_iter_ : int

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from skinfluence import InfluenceScorer, TorchClassifier
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> X = X / 16.0
    >>> net = TorchClassifier(
    ...     torch.nn.Sequential(
    ...         torch.nn.Linear(64, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ...     ),
    ...     weight_decay=1e-2,
    ...     random_state=0,
    ... ).fit(X[:200], y[:200])
    >>> bool(net.score(X[200:], y[200:]) > 0.9)
    True
    >>> S = InfluenceScorer(net, damping="auto").fit(X[:200], y[:200]).influence(
    ...     X[200:203], y[200:203]
    ... )
    >>> S.shape
    (3, 200)
    """

    def _default_criterion(self):
        return torch.nn.CrossEntropyLoss()

    def _encode(self, y):
        return torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.long)

    def _n_outputs(self, yt):
        return len(self.classes_)

    def _check_outputs(self, z, yt):
        K = len(self.classes_)
        if z.dim() != 2 or z.shape[1] != K:
            raise ValueError(
                f"The module outputs shape {tuple(z.shape[1:])} per row, but y has "
                f"{K} classes: a TorchClassifier's module must output one logit "
                f"per class, (n_samples, {K}). Build the last layer with {K} "
                "outputs."
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights ``w_i`` of the losses in the objective
            ``(1/n) sum_i w_i loss_i + (weight_decay/2) ||theta||^2``
            (``n`` the number of rows: a weight of 2 counts a row twice).

        Returns
        -------
        self : TorchClassifier
        """
        X, y = validate_data(self, X, y, dtype=np.float64, allow_nd=True)
        check_classification_targets(y)
        w = self._check_weights(sample_weight, X)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"y has only one class ({classes[0]!r}): a classifier needs at "
                "least 2 classes to learn from. Check the labels, or fit a "
                "regressor."
            )
        self.classes_ = classes
        return self._fit_tensors(X, y, sample_weight=w)

    def decision_function(self, X):
        """Logits of shape (n_samples, n_classes).

        With two classes, scikit-learn's convention: the log-odds of
        ``classes_[1]``, ``z_1 - z_0``, of shape (n_samples,).
        """
        z = self._forward(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X):
        """Softmax of the logits, shape (n_samples, n_classes)."""
        z = self._forward(X)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The most probable class."""
        z = self._forward(X)
        return self.classes_[np.argmax(z, axis=1)]


class TorchRegressor(RegressorMixin, _TorchModel):
    """A torch regression network as a scikit-learn regressor.

    The module maps ``(n, n_features)`` to ``(n, 1)`` (or ``(n, n_targets)``);
    a callable ``module(n_features, n_targets)`` builds it at each fit.  The
    loss defaults to ``MSELoss``.  Parameters as :class:`TorchClassifier`.

    Attributes
    ----------
    module_ : torch.nn.Module
    criterion_ : torch loss
    n_features_in_ : int
    n_iter_ : int

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_diabetes
    >>> from skinfluence import InfluenceScorer, TorchRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> net = TorchRegressor(torch.nn.Linear, weight_decay=1e-3).fit(X, y)
    >>> scorer = InfluenceScorer(net).fit(X, y)
    >>> scorer.self_influence_.shape
    (442,)
    """

    def _default_criterion(self):
        return torch.nn.MSELoss()

    def _encode(self, y):
        y = y.reshape(len(y), -1)
        return torch.as_tensor(y, dtype=_DTYPES[self.dtype])

    def _n_outputs(self, yt):
        return yt.shape[1]

    def _check_outputs(self, z, yt):
        if tuple(z.shape[1:]) != tuple(yt.shape[1:]):
            raise ValueError(
                f"The module outputs shape {tuple(z.shape[1:])} per row, but y has "
                f"{yt.shape[1]} target(s): a TorchRegressor's module must output "
                f"(n_samples, {yt.shape[1]}), or the loss would broadcast."
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights ``w_i`` of the losses in the objective
            ``(1/n) sum_i w_i loss_i + (weight_decay/2) ||theta||^2``.

        Returns
        -------
        self : TorchRegressor
        """
        X, y = validate_data(
            self,
            X,
            y,
            dtype=np.float64,
            multi_output=True,
            y_numeric=True,
            allow_nd=True,
        )
        w = self._check_weights(sample_weight, X)
        self._y_ndim = np.ndim(y)
        return self._fit_tensors(X, y, sample_weight=w)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X):
        """Network outputs, ``(n_samples,)`` for a single target."""
        out = self._forward(X)
        return out[:, 0] if self._y_ndim == 1 and out.shape[1] == 1 else out


def _torch_model_adapter(
    est: _TorchModel, X, y, *, preprocess=None, sample_weight=None, **kwargs: Any
):
    check_is_fitted(est, "module_")
    Xf = preprocess.transform(X) if preprocess is not None else X
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    return _build_adapter(
        est, np.asarray(Xf, dtype=float), np.asarray(y), preprocess, sw, **kwargs
    )


class _TorchModelRefit:
    """The retrain hook of a TorchClassifier/TorchRegressor: warm from a copy at
    the fitted weights, or cold from a clone.  A class holding its inputs, not
    a closure, so fitted adapters (and the scorers around them) pickle."""

    def __init__(self, est, Xf, y, preprocess, sample_weight, kwargs) -> None:
        self.est, self.Xf, self.y = est, Xf, y
        self.preprocess, self.sample_weight, self.kwargs = (
            preprocess,
            sample_weight,
            kwargs,
        )

    def __call__(self, keep, warm_start, random_state=None) -> TorchAdapter:
        Xf, y = self.Xf[keep], self.y[keep]
        new = copy.deepcopy(self.est) if warm_start else clone(self.est)
        if random_state is not None:
            new.set_params(random_state=random_state)
        sw = None if self.sample_weight is None else self.sample_weight[keep]
        if warm_start:
            new._fit_tensors(Xf, y, warm_start=True, sample_weight=sw)
        else:
            new.fit(Xf, y, sample_weight=sw)
        return _build_adapter(new, Xf, y, self.preprocess, sw, **self.kwargs)


def _build_adapter(
    est: _TorchModel, Xf, y, preprocess, sample_weight, **kwargs: Any
) -> TorchAdapter:
    if getattr(est.criterion_, "weight", None) is not None:
        raise ValueError(
            "Class-weighted criteria (weight=...) are not supported yet: the "
            "mean-reduced loss of one sample hides its weight."
        )
    is_clf = isinstance(est, TorchClassifier)
    if not is_clf:
        y = y.reshape(len(y), -1)

    refit = _TorchModelRefit(est, Xf, y, preprocess, sample_weight, kwargs)
    return TorchAdapter(
        est.module_,
        copy.deepcopy(est.criterion_),
        Xf,
        y,
        kind="multiclass" if is_clf else "regression",
        classes=est.classes_ if is_clf else None,
        penalty=est.weight_decay,
        refit=refit,
        preprocess=preprocess,
        sample_weight=sample_weight,
        # the estimator's own dtype unless the caller asks for another
        **{"dtype": _DTYPES[est.dtype], **kwargs},
    )


make_adapter.register(TorchClassifier, _torch_model_adapter)
make_adapter.register(TorchRegressor, _torch_model_adapter)
