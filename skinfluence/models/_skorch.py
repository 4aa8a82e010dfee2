"""Adapter for fitted skorch nets: differentiate exactly what training minimised.

What skorch trains on, and what this adapter therefore differentiates:

* ``net.get_loss(net.infer(x), y)`` in eval mode: ``module_`` then
  ``criterion_``; for ``NeuralNetClassifier`` with ``NLLLoss`` the module
  outputs probabilities and skorch takes ``log(p + eps)`` with the ``eps`` of
  the module's dtype; ``NeuralNetBinaryClassifier`` reshapes the single logit
  to ``(n,)``;
* the rows actually trained on: with a ``train_split`` the validation rows
  never entered the objective, so only the training part of the split is
  used (``train_indices`` maps them back);
* sample weights, when the caller gives them (a net trained, e.g. through a
  ``FrozenEstimator``, on ``(1/n) sum_i w_i loss_i``): each row's loss is
  weighted by ``w_i``.  skorch's ``fit`` has no ``sample_weight``, so such a
  net cannot be retrained here: ``retrain`` refuses;
* L2 from the optimiser: ``weight_decay`` of each parameter group of
  ``optimizer_`` adds ``(wd/2) ||theta||^2`` on the batch-mean scale (SGD,
  Adam and friends).  AdamW's decoupled decay is not an objective term and is
  left out with a warning.

The user's net is never mutated: the module is deep-copied (and cast to
float64 unless asked otherwise).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from skorch import (
    NeuralNet,
    NeuralNetBinaryClassifier,
    NeuralNetClassifier,
    NeuralNetRegressor,
)
from skorch.callbacks import Callback

from ._base import make_adapter
from ._torch import TorchAdapter, reset_parameters

_KINDS = (
    (NeuralNetBinaryClassifier, "binary"),
    (NeuralNetClassifier, "multiclass"),
    (NeuralNetRegressor, "regression"),
)


def _kind(net: NeuralNet) -> str:
    for cls, kind in _KINDS:
        if isinstance(net, cls):
            return kind
    raise TypeError(
        f"{type(net).__name__} is a plain skorch NeuralNet; use NeuralNetClassifier, "
        "NeuralNetBinaryClassifier or NeuralNetRegressor so the loss is known."
    )


def _trained_rows(net: NeuralNet, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    if net.train_split is None:
        return np.arange(len(X))
    ds_train, _ = net.get_split_datasets(X, y)
    indices = getattr(ds_train, "indices", None)
    if indices is None:
        raise ValueError(
            "Cannot tell which rows this net's train_split trained on; fit the net "
            "with train_split=None for influence."
        )
    return np.asarray(indices)


def _penalty(net: NeuralNet) -> dict:
    names = {id(p): k for k, p in net.module_.named_parameters()}
    penalty = {}
    for group in net.optimizer_.param_groups:
        wd = float(group.get("weight_decay", 0.0))
        if wd and isinstance(net.optimizer_, torch.optim.AdamW):
            warnings.warn(
                "AdamW's decoupled weight decay is not a term of the training "
                "objective; influence is computed without it.",
                UserWarning,
                stacklevel=4,
            )
            wd = 0.0
        for p in group["params"]:
            if id(p) in names:
                penalty[names[id(p)].removeprefix("_orig_mod.")] = wd
    return penalty


class _LogEps:
    """skorch's ``log(p + eps)`` of probabilities for ``NLLLoss`` (a class, not a
    closure, so fitted adapters pickle)."""

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        return torch.log(p + self.eps)


def _output_transform(net: NeuralNet, criterion: Any):
    if isinstance(net, NeuralNetClassifier) and isinstance(criterion, torch.nn.NLLLoss):
        dtype = next(net.module_.parameters()).dtype
        return _LogEps(torch.finfo(dtype).eps)
    return None


class _SkorchRefit:
    """The retrain hook of a skorch net: partial_fit on the kept rows, warm
    from a copy or cold from a re-initialised clone.  A class holding its
    inputs, not a closure, so fitted adapters pickle."""

    def __init__(self, net, X, y, sample_weight, input_dtype, kwargs) -> None:
        self.net, self.X, self.y = net, X, y
        self.sample_weight, self.input_dtype, self.kwargs = (
            sample_weight,
            input_dtype,
            kwargs,
        )

    def __call__(
        self, keep: np.ndarray, warm_start: bool, random_state=None
    ) -> TorchAdapter:
        net = self.net
        if self.sample_weight is not None:
            raise ValueError(
                f"Cannot retrain this {type(net).__name__} with sample_weight: "
                "skorch's fit has no sample_weight (extra fit arguments go to the "
                "module). Leave-one-out ground truth needs an unweighted net, or a "
                "TorchClassifier/TorchRegressor, whose fit takes sample_weight."
            )
        Xk, yk = self.X[keep].astype(self.input_dtype), self.y[keep]
        if warm_start:
            new = copy.deepcopy(net)
            new.train_split = None
            new.partial_fit(Xk, yk)
        else:
            new = clone(net).set_params(train_split=None)
            seed = 0
            if random_state is not None:
                seed = int(check_random_state(random_state).randint(2**31 - 1))
            # seeded initialisation and batch order, on a forked generator: the
            # caller's global torch generator is left as it was
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                new.initialize()
                reset_parameters(new.module_)  # a module instance keeps old weights
                new.partial_fit(Xk, yk)
        return _skorch_adapter(new, Xk, yk, **self.kwargs)


def _skorch_adapter(
    net: NeuralNet,
    X,
    y,
    *,
    preprocess=None,
    dtype=torch.float64,
    sample_weight=None,
    **kwargs: Any,
) -> TorchAdapter:
    if not getattr(net, "initialized_", False) or not hasattr(net, "module_"):
        raise NotFittedError(f"This {type(net).__name__} is not fitted yet.")
    if len(getattr(net, "history", [])) == 0:
        raise NotFittedError(
            f"This {type(net).__name__} is initialised but not trained (its "
            "history is empty): influence needs the trained network. Call fit or "
            "partial_fit first; parameters loaded with load_params need their "
            "history too (load_params(f_history=...))."
        )
    kind = _kind(net)
    criterion = copy.deepcopy(net.criterion_)
    if getattr(criterion, "weight", None) is not None:
        raise ValueError(
            "Class-weighted criteria (weight=...) are not supported yet: the "
            "mean-reduced loss of one sample hides its weight."
        )
    if getattr(criterion, "reduction", "mean") != "mean":
        raise ValueError(
            "The criterion must use reduction='mean' (skorch's default): influence "
            "reads the objective as the mean loss."
        )
    Xf = preprocess.transform(X) if preprocess is not None else X
    Xf, y = np.asarray(Xf), np.asarray(y)
    rows = _trained_rows(net, Xf, y)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if len(sample_weight) != len(Xf):
            raise ValueError(
                f"sample_weight has {len(sample_weight)} entries for {len(Xf)} "
                "training rows."
            )
        sample_weight = sample_weight[rows]
    module_dtype = next(net.module_.parameters()).dtype
    input_dtype = np.float32 if module_dtype == torch.float32 else np.float64

    refit = _SkorchRefit(
        net, Xf[rows], y[rows], sample_weight, input_dtype, {"dtype": dtype, **kwargs}
    )

    return TorchAdapter(
        net.module_,
        criterion,
        Xf[rows],
        y[rows],
        kind=kind,
        classes=np.asarray(net.classes_) if kind != "regression" else None,
        penalty=_penalty(net),
        output_transform=_output_transform(net, criterion),
        dtype=dtype,
        refit=refit,
        preprocess=preprocess,
        sample_weight=sample_weight,
        train_indices=rows,
        checkpoints=_saved_checkpoints(net),
        **kwargs,
    )


def _saved_checkpoints(net: NeuralNet) -> list:
    found = [
        cb
        for _, cb in getattr(net, "callbacks_", [])
        if isinstance(cb, TracInCheckpoints)
    ]
    return found[0].checkpoints_ if found else []


class TracInCheckpoints(Callback):
    """skorch callback saving the parameters and learning rate for TracIn.

    Add it to a net's ``callbacks``; after ``fit``, influence estimators built
    on the net see the checkpoints (``NoisyLabelDetector(net,
    method="tracin")``).  TracIn's self-influence of a training point is
    ``sum_k lr_k ||grad loss_i(theta_k)||^2`` over the checkpoints (Pruthi et
    al. 2020, TracInCP).

    Parameters
    ----------
    every : int, default=1
        Save after every ``every``-th epoch.
    max_checkpoints : int or None, default=None
        Keep only the latest ones (memory: one parameter copy each).

    Attributes
    ----------
    checkpoints_ : list of (dict, float)
        ``(parameters by name on the CPU, learning rate of the first
        parameter group)`` per saved epoch, oldest first.
    epoch_lr_ : float
        The learning rate of the epoch in progress (a fitted attribute, so a
        fitted net carrying this callback still clones).

    References
    ----------
    Pruthi, Liu, Kale, Sundararajan. "Estimating Training Data Influence by
    Tracing Gradient Descent." NeurIPS 2020.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from skorch import NeuralNetClassifier
    >>> from skinfluence import NoisyLabelDetector, TracInCheckpoints
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> X = (X / 16.0).astype(np.float32)
    >>> _ = torch.manual_seed(0)
    >>> net = NeuralNetClassifier(
    ...     torch.nn.Sequential(torch.nn.Linear(64, 3)),
    ...     criterion=torch.nn.CrossEntropyLoss,
    ...     max_epochs=4,
    ...     lr=0.1,
    ...     train_split=None,
    ...     verbose=0,
    ...     callbacks=[TracInCheckpoints(every=2)],
    ... ).fit(X[:200], y[:200])
    >>> detector = NoisyLabelDetector(net, method="tracin").fit(X[:200], y[:200])
    >>> detector.scores_.shape
    (200,)
    """

    def __init__(self, every: int = 1, max_checkpoints: int | None = None) -> None:
        self.every = every
        self.max_checkpoints = max_checkpoints

    def initialize(self) -> TracInCheckpoints:
        """Forget earlier checkpoints (called by ``net.initialize``)."""
        if not (isinstance(self.every, int) and self.every >= 1):
            raise ValueError(f"every must be an int >= 1; got {self.every!r}.")
        if self.max_checkpoints is not None and not (
            isinstance(self.max_checkpoints, int) and self.max_checkpoints >= 1
        ):
            raise ValueError(
                f"max_checkpoints must be None or an int >= 1; got "
                f"{self.max_checkpoints!r}."
            )
        self.checkpoints_: list = []
        return self

    def on_epoch_begin(self, net: NeuralNet, **kwargs: Any) -> None:
        """Note the learning rate this epoch trains with (before any scheduler
        callback steps it at the epoch's end)."""
        self.epoch_lr_ = float(net.optimizer_.param_groups[0]["lr"])

    def on_epoch_end(self, net: NeuralNet, **kwargs: Any) -> None:
        """Save the parameters and the epoch's learning rate."""
        if len(net.history) % self.every:
            return
        theta = {
            k.removeprefix("_orig_mod."): p.detach().cpu().clone()
            for k, p in net.module_.named_parameters()
            if p.requires_grad
        }
        self.checkpoints_.append((theta, self.epoch_lr_))
        if self.max_checkpoints is not None:
            del self.checkpoints_[: -self.max_checkpoints]


make_adapter.register(NeuralNet, _skorch_adapter)
