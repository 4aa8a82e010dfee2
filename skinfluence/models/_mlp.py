"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, through the torch path.

The fitted ``coefs_``/``intercepts_`` become an equivalent ``nn.Sequential``
of ``nn.Linear`` layers and the hidden activation (``identity``,
``logistic``, ``tanh`` or ``relu``), ending in the pre-activation of the
output layer; the output activation is folded into the loss.  The result is a
:class:`~skinfluence.models.TorchAdapter`, so every network curvature
backend (GGN, K-FAC, EK-FAC, ...) applies.

The objective is read exactly as scikit-learn defines it
(``sklearn/neural_network/_multilayer_perceptron.py``, ``_backprop``).  With
``S = sum_i w_i`` (``n`` without ``sample_weight``), scikit-learn minimises

``J_sk = (1/S) [ sum_i w_i loss_i + (alpha/2) sum_l ||coefs_[l]||^2 ]``

with the intercepts unpenalised and, per sample,

* multiclass (softmax output): cross-entropy of the softmax of the logits;
* binary (one logistic output): binary cross-entropy of the logit;
* ``loss="squared_error"``: ``(1/2) sum_k (y_k - z_k)^2``;
* ``loss="poisson"`` (exponential output): the half Poisson deviance
  ``sum_k exp(z_k) - y_k z_k + y_k log y_k - y_k``.

Multiplied by ``S / n`` this is skinfluence's convention
``J = (1/n) sum_i w_i loss_i + (1/2) theta^T diag(penalty) theta`` with
``penalty = alpha / n`` on every ``coefs_`` entry and 0 on the intercepts:
the same minimiser, and removing row ``m`` and refitting with the same
``alpha`` subtracts ``w_m loss_m / n``.  Two conventions differ from the
numbers scikit-learn reports:

* for several regression targets, scikit-learn's ``loss_`` averages the
  squared error over the targets, but the gradient it descends (and so the
  optimum it reaches) is that of the *sum* over targets, which is the loss
  used here;
* scikit-learn clips probabilities at machine epsilon in ``loss_``; the
  loss here is the unclipped one on logits (equal unless a probability
  underflows).

Not supported, with a clear error: multilabel classifiers (an indicator
matrix ``y``) and ``early_stopping=True`` with the ``sgd``/``adam`` solvers
(the held-out rows and the returned best iterate are not an optimum of the
training objective; with ``lbfgs`` scikit-learn ignores ``early_stopping``).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, NoReturn

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.neural_network import MLPClassifier, MLPRegressor

from .._constants import RETRAIN_MAX_ITER, RETRAIN_TOL
from ._base import make_adapter
from ._torch import TorchAdapter

_ACTIVATIONS = {
    "identity": torch.nn.Identity,
    "logistic": torch.nn.Sigmoid,
    "tanh": torch.nn.Tanh,
    "relu": torch.nn.ReLU,
}


class HalfSquaredError(torch.nn.Module):
    """``mean_i (1/2) sum_k (z_ik - y_ik)^2``: scikit-learn's MLP squared loss
    (summed over targets, as its gradient is)."""

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Batch mean of the per-row loss."""
        d = (z - y.reshape(z.shape)).reshape(len(z), -1)
        return 0.5 * (d**2).sum(dim=1).mean()


class HalfPoissonDeviance(torch.nn.Module):
    """``mean_i sum_k exp(z_ik) - y_ik z_ik + y_ik log y_ik - y_ik`` on the
    log-mean ``z``: scikit-learn's MLP ``loss="poisson"``."""

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Batch mean of the per-row deviance."""
        y = y.reshape(z.shape)
        dev = torch.exp(z) - y * z + torch.xlogy(y, y) - y
        return dev.reshape(len(z), -1).sum(dim=1).mean()


def _reject(est: Any, why: str) -> NoReturn:
    raise ValueError(f"Cannot compute influence for {type(est).__name__}: {why}")


def mlp_module(est: MLPClassifier | MLPRegressor) -> torch.nn.Sequential:
    """The fitted network as ``nn.Sequential`` (float64), output pre-activation.

    ``coefs_[l]`` of shape ``(fan_in, fan_out)`` becomes the ``weight`` (its
    transpose) of ``nn.Linear`` number ``2 l`` and ``intercepts_[l]`` its bias;
    the hidden activation sits between consecutive layers.
    """
    if not hasattr(est, "coefs_"):
        raise NotFittedError(f"This {type(est).__name__} is not fitted yet.")
    layers: list[torch.nn.Module] = []
    n = len(est.coefs_)
    for num, (W, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
        lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(np.asarray(W, dtype=np.float64).T))
            lin.bias.copy_(torch.as_tensor(np.asarray(b, dtype=np.float64)))
        layers.append(lin)
        if num < n - 1:
            layers.append(_ACTIVATIONS[est.activation]())
    return torch.nn.Sequential(*layers)


def _kind_and_loss(est: Any) -> tuple[str, torch.nn.Module]:
    out = est.out_activation_
    if isinstance(est, MLPClassifier):
        if out == "softmax":
            return "multiclass", torch.nn.CrossEntropyLoss()
        if est.n_outputs_ == 1:
            return "binary", torch.nn.BCEWithLogitsLoss()
        _reject(
            est,
            "multilabel classification (an indicator matrix y) is not supported; "
            "fit one MLPClassifier per label, or a multiclass one.",
        )
    if est.loss == "squared_error" and out == "identity":
        return "regression", HalfSquaredError()
    if est.loss == "poisson" and out == "exp":
        return "regression", HalfPoissonDeviance()
    _reject(est, f"loss={est.loss!r} with output {out!r} is not supported.")


def _check_supported(est: Any) -> None:
    if est.early_stopping and est.solver in ("sgd", "adam"):
        _reject(
            est,
            "early_stopping=True trains on a random part of the rows and returns "
            "the best iterate on the held-out rest, which is not an optimum of "
            "the training objective on the rows given. Use early_stopping=False "
            "(or solver='lbfgs').",
        )
    if est.activation not in _ACTIVATIONS:
        _reject(est, f"activation={est.activation!r} is not supported.")


def _penalty(module: torch.nn.Module, alpha: float, n: int) -> dict:
    """``alpha / n`` on weights (sklearn's ``coefs_``), 0 on biases."""
    return {
        k: (alpha / n if k.endswith("weight") else 0.0)
        for k, _ in module.named_parameters()
    }


def _dense(X: Any) -> NDArray:
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


def _mlp_adapter(
    est: MLPClassifier | MLPRegressor,
    X: ArrayLike,
    y: ArrayLike,
    *,
    preprocess: Any = None,
    sample_weight: ArrayLike | None = None,
    **kwargs: Any,
) -> TorchAdapter:
    """Build the adapter of a fitted MLP on its training data ``(X, y)``."""
    Xf = preprocess.transform(X) if preprocess is not None else X
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    return _build(est, _dense(Xf).astype(np.float64), np.asarray(y), preprocess, sw,
                  **kwargs)  # fmt: skip


class _MLPRefit:
    """The retrain hook of an MLP: scikit-learn's own fit on the kept rows.  A
    class holding its inputs, not a closure, so fitted adapters pickle."""

    def __init__(self, est, Xf, y, preprocess, sample_weight, kind, kwargs) -> None:
        self.est, self.Xf, self.y, self.kind = est, Xf, y, kind
        self.preprocess, self.sample_weight, self.kwargs = (
            preprocess,
            sample_weight,
            kwargs,
        )

    def __call__(self, keep: NDArray, warm_start: bool, random_state: Any = None):
        Xk, yk = self.Xf[keep], self.y[keep]
        swk = None if self.sample_weight is None else self.sample_weight[keep]
        if self.kind != "regression" and len(np.unique(yk)) != len(self.est.classes_):
            raise ValueError("Retraining on these rows would drop a class entirely.")
        new = _retrain(self.est, Xk, yk, swk, warm_start, random_state)
        return _build(new, Xk, yk, self.preprocess, swk, **self.kwargs)


def _build(
    est: Any,
    Xf: NDArray,
    y: NDArray,
    preprocess: Any,
    sample_weight: NDArray | None,
    **kwargs: Any,
) -> TorchAdapter:
    module = mlp_module(est)
    _check_supported(est)
    kind, loss = _kind_and_loss(est)
    if kind == "regression":
        y = y.reshape(len(y), -1)
    n = len(Xf)

    refit = _MLPRefit(est, Xf, y, preprocess, sample_weight, kind, kwargs)

    return TorchAdapter(
        module,
        loss,
        Xf,
        y,
        kind=kind,
        classes=est.classes_ if kind != "regression" else None,
        penalty=_penalty(module, float(est.alpha), n),
        refit=refit,
        preprocess=preprocess,
        sample_weight=sample_weight,
        **kwargs,
    )


def _retrain(
    est: Any,
    X: NDArray,
    y: NDArray,
    sample_weight: NDArray | None,
    warm_start: bool,
    random_state: Any,
) -> Any:
    """Refit with scikit-learn: warm from a copy at the fitted weights, or cold
    from a clone (seeded by ``random_state`` when given); L-BFGS tightly."""
    if warm_start:
        new = copy.deepcopy(est)
        new.set_params(warm_start=True)
    else:
        new = clone(est)
        if random_state is not None:
            new.set_params(random_state=random_state)
    if new.solver == "lbfgs":
        new.set_params(
            tol=min(new.tol, RETRAIN_TOL),
            max_iter=max(new.max_iter, RETRAIN_MAX_ITER),
            max_fun=max(new.max_fun, 10 * RETRAIN_MAX_ITER),
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # MLP's sample_weight arrived in scikit-learn 1.7: pass it only if given
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return new.fit(X, y, **kwargs)


make_adapter.register(MLPClassifier, _mlp_adapter)
make_adapter.register(MLPRegressor, _mlp_adapter)
