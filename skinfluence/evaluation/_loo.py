"""Actual leave-one-out retraining: the ground truth for influence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils import check_consistent_length
from sklearn.utils.validation import check_is_fitted, validate_data

from ..models import Retrainable, require
from ..utils._validation import check_indices
from ._parallel import (
    chunks,
    contiguous,
    progress_bar,
    refit_seed,
    resolve_n_jobs,
    run,
    seeded,
)


class _LeaveOut:
    """``model_without`` of :func:`loo_change`: the adapter refitted without
    one trained row (a class, not a closure, so it pickles for workers)."""

    def __init__(self, adapter: Any, warm_start: bool) -> None:
        self.adapter = adapter
        self.warm_start = warm_start

    def __call__(self, i: int | None) -> Any:
        keep = np.ones(self.adapter.n_train, dtype=bool)
        if i is not None:
            keep[i] = False
        return self.adapter.retrain(keep, warm_start=self.warm_start)


def loo_change(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike,
    indices: ArrayLike,
    *,
    warm_start: bool = True,
    target: str = "loss",
    verbose: int | None = None,
    n_jobs: int | None = None,
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
    n_jobs : int or None, default=None
        Refits run at once, through :class:`joblib.Parallel`: loky worker
        processes unless a ``joblib.parallel_config`` chooses another backend;
        under ``parallel_config(backend="dask")`` (with a
        ``dask.distributed.Client`` open) the refits run on the cluster.
        ``None`` uses the scorer's own ``n_jobs`` if it has one, else joblib's
        default (1, unless a ``parallel_config`` sets ``n_jobs``); ``-1``
        uses every core.  The result equals the sequential one: each refit
        runs under a seed derived from the removed row (numpy's and torch's
        global generators; the caller's are left as they were) and results
        are gathered in order.  Workers receive the adapter (training data
        and fitted model) with a chunk of rows, at most four chunks per
        worker.

    Returns
    -------
    delta : ndarray of shape (n_query, k)
        ``f(x_j; theta_{-i}) - f(x_j; theta)`` with ``f`` the loss (without
        the penalty) or the prediction.  Same orientation and scale as
        ``scorer.influence(X, y, target=target) / scorer.n_train_``: for the
        loss, positive means removing ``i`` raises ``j``'s loss.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.evaluation import loo_change
    >>> X, y = load_diabetes(return_X_y=True)
    >>> scorer = InfluenceScorer(Ridge()).fit(X[:100], y[:100])
    >>> loo_change(scorer, X[100:103], y[100:103], [0, 1, 2, 3], n_jobs=2).shape
    (3, 4)
    """
    check_is_fitted(scorer, "adapter_")
    adapter = require(
        scorer.adapter_,
        Retrainable,
        purpose="loo_change",
        instead="give the adapter a retrain method, or use pbrf_change",
    )
    return response_changes(
        scorer,
        X,
        y,
        indices,
        _LeaveOut(adapter, warm_start),
        target=target,
        verbose=verbose,
        desc="LOO refits",
        n_jobs=n_jobs,
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
    n_jobs: int | None = None,
) -> NDArray:
    """``f(model_without(i)) - f(model_without(None))`` for each listed ``i``.

    The shared loop of the ground truths: ``model_without(i)`` returns an
    adapter-like object (``loss``/``prediction``) for the training set with
    point ``i`` removed, ``None`` meaning the reference.

    Parameters
    ----------
    scorer : InfluenceScorer
        A fitted scorer.
    X : array-like of shape (n_query, n_features)
        Query inputs.
    y : array-like of shape (n_query,) or None
        Query targets (unused for ``target="prediction"``).
    indices : array-like of int of shape (k,), or boolean mask
        Rows of the ``X`` given to the scorer's ``fit``, as in
        :func:`loo_change`.
    model_without : callable
        ``model_without(position)`` with ``position`` the removed row's
        position among the trained rows, or ``None``.  With ``n_jobs`` other
        than 1 it is pickled (cloudpickle) to the workers.
    target : {"loss", "prediction"}, default="loss"
        The measured quantity.
    verbose : int or None, default=None
        Progress bar over refits; ``None`` uses ``scorer.verbose``.
    desc : str, default="responses"
        The progress bar's label.
    n_jobs : int or None, default=None
        As in :func:`loo_change`: each call of ``model_without`` runs under a
        seed derived from its position, so ``n_jobs`` does not change the
        result.

    Returns
    -------
    delta : ndarray of shape (n_query, k)
        The change of the measured quantity per listed row (0 for rows the
        model never trained on).
    """
    delta, _ = _response_changes(
        scorer,
        X,
        y,
        indices,
        model_without,
        target=target,
        verbose=verbose,
        desc=desc,
        n_jobs=n_jobs,
    )
    return delta


def _measure(model: Any, X: ArrayLike, y: ArrayLike | None, target: str) -> NDArray:
    return model.loss(X, y) if target == "loss" else model.prediction(X)


def _refit_chunk(
    model_without: Callable[[int | None], Any],
    X: ArrayLike,
    y: ArrayLike | None,
    target: str,
    positions: NDArray,
) -> list[tuple[NDArray, dict | None]]:
    """One task: ``(measured values, response_info or None)`` per position."""
    out = []
    for pos in positions:
        with seeded(refit_seed(pos)):
            model = model_without(int(pos))
            value = _measure(model, X, y, target)
        out.append((value, getattr(model, "response_info", None)))
    return out


def _response_changes(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    indices: ArrayLike,
    model_without: Callable[[int | None], Any],
    *,
    target: str,
    verbose: int | None,
    desc: str,
    n_jobs: int | None,
) -> tuple[NDArray, list[dict | None]]:
    """:func:`response_changes` and, per listed row, the refit's
    ``response_info`` (``None`` for a row never trained on, or an adapter
    that does not report)."""
    check_is_fitted(scorer, "adapter_")
    if target not in ("loss", "prediction"):
        raise ValueError(f"target must be 'loss' or 'prediction'; got {target!r}.")
    if target == "loss" and y is None:
        raise ValueError("target='loss' needs y; pass y or use target='prediction'.")
    validate_data(scorer, X, skip_check_array=True, reset=False)
    if y is not None:
        check_consistent_length(X, y)
    n_jobs = resolve_n_jobs(n_jobs, scorer)
    X, y = contiguous(X), contiguous(y)  # the layout the workers receive

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
    with seeded(refit_seed(None)):
        base = _measure(model_without(None), X, y, target)
    delta = np.zeros((len(base), idx.size))
    infos: list[dict | None] = [None] * idx.size
    cols = np.flatnonzero(position[idx] >= 0)
    positions = position[idx[cols]]
    tasks = [
        (model_without, X, y, target, positions[c]) for c in chunks(cols.size, n_jobs)
    ]
    results: list = []
    with progress_bar(cols.size, desc, verbose) as bar:
        for part in run(_refit_chunk, tasks, n_jobs=n_jobs):
            results.extend(part)
            bar.update(len(part))
    for col, (value, info) in zip(cols, results, strict=True):
        delta[:, col] = value - base
        infos[col] = info
    return delta, infos
