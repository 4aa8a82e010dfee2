"""Agreement between predicted and actual changes, and an sklearn scorer."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.utils import _safe_indexing, check_random_state

from ..utils._sklearn_compat import Interval, StrOptions, validate_params
from ._loo import loo_change

_HIGHER_IS = {"helpful": 1.0, "harmful": -1.0}


@validate_params(
    {
        "predicted": ["array-like"],
        "actual": ["array-like"],
        "method": [StrOptions({"pearson", "spearman"})],
        "higher_is": [StrOptions(set(_HIGHER_IS))],
        "average": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def loo_correlation(
    predicted: ArrayLike,
    actual: ArrayLike,
    *,
    method: str = "pearson",
    higher_is: str = "helpful",
    average: bool = True,
) -> float | NDArray:
    """Correlation between predicted and actual leave-one-out changes.

    Parameters
    ----------
    predicted : array-like of shape (n_query, k) or (k,)
        Scores for the removed training points, e.g. ``influence(X, y)[:, idx]``.
    actual : array-like of the same shape
        Actual changes, e.g. :func:`loo_change`.
    method : {"pearson", "spearman"}, default="pearson"
    higher_is : {"helpful", "harmful"}, default="helpful"
        Orientation of ``predicted``: ``"helpful"`` for skinfluence's removal
        scores (positive = removal raises the loss), ``"harmful"`` for scores
        of the opposite sign (e.g. up-weighting effects).
    average : bool, default=True
        Return the mean over query rows; else one value per row.

    Returns
    -------
    r : float or ndarray of shape (n_query,)
    """
    P = np.atleast_2d(np.asarray(predicted, dtype=float)) * _HIGHER_IS[higher_is]
    A = np.atleast_2d(np.asarray(actual, dtype=float))
    if P.shape != A.shape:
        raise ValueError(f"predicted {P.shape} and actual {A.shape} differ in shape.")
    corr = stats.pearsonr if method == "pearson" else stats.spearmanr
    r = np.array([corr(p, a)[0] for p, a in zip(P, A, strict=True)])
    return float(np.mean(r)) if average else r


def loo_slope(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Least-squares slope of actual on predicted change (1 = right scale).

    Parameters
    ----------
    predicted, actual : array-like of the same shape
        Predicted changes (``S / n_train``) and actual changes.

    Returns
    -------
    slope : float
    """
    p = np.ravel(np.asarray(predicted, dtype=float))
    a = np.ravel(np.asarray(actual, dtype=float))
    return float(p @ a / (p @ p))


@validate_params(
    {
        "n_train_points": [Interval(Integral, 2, None, closed="left")],
        "n_queries": [Interval(Integral, 1, None, closed="left")],
        "selection": [StrOptions({"top", "random"})],
        "method": [StrOptions({"pearson", "spearman"})],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=True,
)
def make_loo_scorer(
    n_train_points: int = 30,
    *,
    n_queries: int = 3,
    selection: str = "top",
    method: str = "spearman",
    warm_start: bool = True,
    random_state: Any = None,
    n_jobs: int | None = None,
) -> Callable[[Any, ArrayLike, ArrayLike], float]:
    """A ``scoring=`` callable: agreement of influence with actual LOO.

    For use in ``GridSearchCV``/``cross_validate`` on an ``InfluenceScorer``
    (or a ``Pipeline`` ending in one): on the evaluation fold, take
    ``n_queries`` query rows, predict the removal effect of
    ``n_train_points`` training points, retrain without each of them and
    return the mean per-query correlation.  Expensive (``n_train_points``
    refits per call) and honest.

    Parameters
    ----------
    n_train_points : int, default=30
        Training points removed (one refit each).
    n_queries : int, default=3
        Query rows drawn from the evaluation fold.
    selection : {"top", "random"}, default="top"
        ``"top"``: the training points with the largest predicted
        ``|change|`` (Koh & Liang's protocol); ``"random"``: uniform.
    method : {"pearson", "spearman"}, default="spearman"
    warm_start : bool, default=True
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None
        Refits run at once in each call, as in :func:`loo_change` (``None``:
        the scored estimator's own ``n_jobs`` if it has one, else joblib's
        default; a ``joblib.parallel_config``, e.g. ``backend="dask"``,
        applies).  The score is the same for any ``n_jobs``.  Inside a
        search that is itself parallel (``GridSearchCV(n_jobs=...)``) joblib
        runs these refits sequentially in each of its workers.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, higher is better.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.model_selection import cross_val_score
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.evaluation import make_loo_scorer
    >>> X, y = load_diabetes(return_X_y=True)
    >>> scoring = make_loo_scorer(10, random_state=0, n_jobs=2)
    >>> scores = cross_val_score(InfluenceScorer(Ridge()), X[:150], y[:150],
    ...                          cv=3, scoring=scoring)
    >>> bool(scores.min() > 0.5)
    True
    """

    def score(estimator: Any, X: ArrayLike, y: ArrayLike) -> float:
        rng = check_random_state(random_state)
        if hasattr(estimator, "steps"):
            X = estimator[:-1].transform(X) if len(estimator) > 1 else X
            estimator = estimator[-1]
        y = np.asarray(y)
        q = rng.choice(len(y), size=min(n_queries, len(y)), replace=False)
        Xq = _safe_indexing(X, q)  # DataFrame, sparse matrix, list or array
        S = estimator.influence(Xq, y[q])
        n = S.shape[1]
        k = min(n_train_points, n)
        if selection == "top":
            idx = np.argsort(-np.max(np.abs(S), axis=0))[:k]
        else:
            idx = rng.choice(n, size=k, replace=False)
        actual = loo_change(
            estimator, Xq, y[q], idx, warm_start=warm_start, verbose=0, n_jobs=n_jobs
        )
        return loo_correlation(S[:, idx] / n, actual, method=method)

    return score
