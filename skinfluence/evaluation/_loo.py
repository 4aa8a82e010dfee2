"""Actual leave-one-out retraining: the ground truth for influence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils import check_consistent_length
from sklearn.utils.validation import check_is_fitted, validate_data

from ..models import Retrainable, require
from ..utils._progress import progress
from ..utils._validation import check_indices


def loo_change(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike,
    indices: ArrayLike,
    *,
    warm_start: bool = True,
    target: str = "loss",
    verbose: int | None = None,
) -> NDArray:
    """Actual change of each query loss when each training point is removed.

    Each listed training point is removed in turn and the wrapped model is
    refitted with the same hyper-parameters (preprocessing fixed), a tight
    tolerance (``tol=1e-10``) and, with ``warm_start=True``, starting from the
    fitted parameters.  The reference is the full training set refitted with
    the same recipe, so the differences measure removal, not the original
    fit's optimisation error.

    Parameters
    ----------
    scorer : InfluenceScorer
        A fitted scorer (its ``adapter_`` provides the retrain hook).
    X : array-like of shape (n_query, n_features)
        Query inputs.
    y : array-like of shape (n_query,) or None
        Query targets (unused for ``target="prediction"``).
    indices : array-like of int of shape (k,), or boolean mask of shape \
(n_samples_fit,)
        Rows of the ``X`` given to the scorer's ``fit`` to remove, one at a
        time (negative counts from the end); rows the model never trained on
        (a skorch ``train_split``) give 0.
    warm_start : bool, default=True
        Start each refit from the fitted parameters (solvers that support it).
    target : {"loss", "prediction"}, default="loss"
        The measured quantity, as in ``InfluenceScorer.influence``.
    verbose : int or None, default=None
        Progress bar over refits; ``None`` uses ``scorer.verbose``.

    Returns
    -------
    delta : ndarray of shape (n_query, k)
        ``f(x_j; theta_{-i}) - f(x_j; theta)`` with ``f`` the loss (without
        the penalty) or the prediction.  Same orientation and scale as
        ``scorer.influence(X, y, target=target) / scorer.n_train_``: for the
        loss, positive means removing ``i`` raises ``j``'s loss.
    """
    check_is_fitted(scorer, "adapter_")
    adapter = require(
        scorer.adapter_,
        Retrainable,
        purpose="loo_change",
        instead="give the adapter a retrain method, or use pbrf_change",
    )
    n = adapter.n_train

    def model_without(i: int | None) -> Any:
        keep = np.ones(n, dtype=bool)
        if i is not None:
            keep[i] = False
        return adapter.retrain(keep, warm_start=warm_start)

    return response_changes(
        scorer,
        X,
        y,
        indices,
        model_without,
        target=target,
        verbose=verbose,
        desc="LOO refits",
    )


def response_changes(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    indices: ArrayLike,
    model_without: Callable[[int | None], Any],
    *,
    target: str = "loss",
    verbose: int | None = None,
    desc: str = "responses",
) -> NDArray:
    """``f(model_without(i)) - f(model_without(None))`` for each listed ``i``.

    The shared loop of the ground truths: ``model_without(i)`` returns an
    adapter-like object (``loss``/``prediction``) for the training set with
    point ``i`` removed, ``None`` meaning the reference.
    """
    check_is_fitted(scorer, "adapter_")
    if target not in ("loss", "prediction"):
        raise ValueError(f"target must be 'loss' or 'prediction'; got {target!r}.")
    if target == "loss" and y is None:
        raise ValueError("target='loss' needs y; pass y or use target='prediction'.")
    validate_data(scorer, X, skip_check_array=True, reset=False)
    if y is not None:
        check_consistent_length(X, y)

    def measure(a: Any) -> NDArray:
        return a.loss(X, y) if target == "loss" else a.prediction(X)

    n = scorer.adapter_.n_train
    # indices are rows of the X given to fit, like the scorer's columns; a
    # row a skorch train_split held out never entered training: change 0
    trained = np.asarray(getattr(scorer, "train_indices_", np.arange(n)))
    n_rows = getattr(scorer, "n_samples_fit_", n)
    idx = check_indices(
        list(indices) if not hasattr(indices, "__len__") else indices, n_rows
    )
    position = np.full(n_rows, -1)
    position[trained] = np.arange(len(trained))
    verbose = getattr(scorer, "verbose", 0) if verbose is None else verbose
    base = measure(model_without(None))
    delta = np.zeros((len(base), idx.size))
    for col, i in enumerate(progress(idx, desc=desc, verbose=verbose)):
        if position[i] >= 0:
            delta[:, col] = measure(model_without(int(position[i]))) - base
    return delta
