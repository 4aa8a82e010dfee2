"""Predicted against actual change: how well influence matches a refit."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted

from ._common import check_count, correlations, fmt, identity_line, new_axes

_GROUND_TRUTHS = {
    "loo": "leave-one-out refit",
    "pbrf": "PBRF",
}


class FidelityDisplay:
    """Influence's predicted change against the actual change, with y = x.

    Each point is a (query, removed training row) pair: on the x axis the
    predicted change of the query's loss (or prediction) when the row is
    removed, ``S / n_train_``; on the y axis the actual change, by a
    leave-one-out refit (:func:`skinfluence.evaluation.loo_change`) or the
    proximal Bregman response function
    (:func:`skinfluence.evaluation.pbrf_change`, the reference for
    networks).  Points on the dashed line ``y = x`` are exact; the title
    gives the Pearson and Spearman correlations.

    Create it with :meth:`from_estimator` or :meth:`from_predictions`; the
    constructor only stores.

    Parameters
    ----------
    predicted : array-like
        Predicted changes.
    actual : array-like of the same shape
        Actual changes.
    ground_truth : {"loo", "pbrf"} or str, default="loo"
        What ``actual`` is, for the axis label.
    target : {"loss", "prediction"}, default="loss"
        What changes, for the axis labels.

    Attributes
    ----------
    figure_ : matplotlib.figure.Figure
    ax_ : matplotlib.axes.Axes
    scatter_ : matplotlib.collections.PathCollection
    line_ : matplotlib.lines.Line2D
        The ``y = x`` line.
    pearson_, spearman_ : float
        The correlations in the title (NaN when either side is constant).

    See Also
    --------
    skinfluence.evaluation.make_loo_scorer : The same agreement as a scorer.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.display import FidelityDisplay
    >>> X, y = load_diabetes(return_X_y=True)
    >>> scorer = InfluenceScorer(Ridge(alpha=1.0)).fit(X[:150], y[:150])
    >>> disp = FidelityDisplay.from_estimator(scorer, X[150:152], y[150:152])
    >>> bool(disp.pearson_ > 0.99)
    True
    """

    def __init__(
        self,
        predicted: ArrayLike,
        actual: ArrayLike,
        *,
        ground_truth: str = "loo",
        target: str = "loss",
    ) -> None:
        self.predicted = predicted
        self.actual = actual
        self.ground_truth = ground_truth
        self.target = target

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: ArrayLike,
        y: ArrayLike | None = None,
        *,
        n_rows: int = 20,
        target: str = "loss",
        ground_truth: str = "loo",
        ground_truth_params: dict | None = None,
        n_jobs: int | None = None,
        ax: Any = None,
    ) -> FidelityDisplay:
        """Predict, retrain and plot for the most influential rows.

        Parameters
        ----------
        estimator : InfluenceScorer
            Fitted.
        X : array-like of shape (n_query, n_features)
            Queries.
        y : array-like of shape (n_query,), default=None
            Their targets; required for ``target="loss"``.
        n_rows : int, default=20
            Training rows removed (one refit each): those of largest
            ``max_j |S[j, i]|`` over the queries.
        target : {"loss", "prediction"}, default="loss"
        ground_truth : {"loo", "pbrf"}, default="loo"
            ``"loo"``: :func:`~skinfluence.evaluation.loo_change` (convex
            models); ``"pbrf"``: :func:`~skinfluence.evaluation.pbrf_change`
            (networks).
        ground_truth_params : dict, default=None
            More arguments of that function, e.g. ``{"epsilon": 0.02}`` for
            the PBRF or ``{"warm_start": False}`` for leave-one-out.
        n_jobs : int or None, default=None
            Refits at once, as in the ground-truth function.
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : FidelityDisplay
        """
        from ..evaluation import loo_change, pbrf_change

        check_is_fitted(estimator)
        if ground_truth not in _GROUND_TRUTHS:
            raise ValueError(
                f"ground_truth must be 'loo' or 'pbrf'; got {ground_truth!r}."
            )
        n_rows = check_count(n_rows, "n_rows")
        S = estimator.influence(X, y, target=target)
        trained = np.asarray(estimator.train_indices_)
        n_rows = min(n_rows, len(trained))
        strength = np.abs(S[:, trained]).max(axis=0)
        rows = trained[np.argsort(-strength, kind="stable")[:n_rows]]
        truth = loo_change if ground_truth == "loo" else pbrf_change
        params = dict(ground_truth_params or {})
        actual = truth(estimator, X, y, rows, target=target, n_jobs=n_jobs, **params)
        predicted = S[:, rows] / estimator.n_train_
        disp = cls(predicted, actual, ground_truth=ground_truth, target=target)
        return disp.plot(ax=ax)

    @classmethod
    def from_predictions(
        cls,
        predicted: ArrayLike,
        actual: ArrayLike,
        *,
        ground_truth: str = "loo",
        target: str = "loss",
        ax: Any = None,
    ) -> FidelityDisplay:
        """Plot predicted against actual changes computed elsewhere.

        Parameters
        ----------
        predicted : array-like
            E.g. ``scorer.influence(X, y)[:, rows] / scorer.n_train_``.
        actual : array-like of the same shape
            E.g. ``loo_change(scorer, X, y, rows)``.
        ground_truth : str, default="loo"
            What ``actual`` is: ``"loo"``, ``"pbrf"`` or a label.
        target : {"loss", "prediction"}, default="loss"
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : FidelityDisplay
        """
        return cls(predicted, actual, ground_truth=ground_truth, target=target).plot(
            ax=ax
        )

    def plot(self, ax: Any = None) -> FidelityDisplay:
        """Draw the scatter, the ``y = x`` line and the correlations.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.

        Returns
        -------
        display : FidelityDisplay
            ``self``, with ``figure_`` and ``ax_`` set.
        """
        x = np.ravel(np.asarray(self.predicted, dtype=float))
        y = np.ravel(np.asarray(self.actual, dtype=float))
        if np.shape(self.predicted) != np.shape(self.actual) or x.size == 0:
            raise ValueError(
                "predicted and actual must have the same, non-empty shape; got "
                f"{np.shape(self.predicted)} and {np.shape(self.actual)}."
            )
        ax = new_axes(ax)
        self.scatter_ = ax.scatter(x, y, s=18, alpha=0.7, edgecolors="k", lw=0.4)
        self.line_ = identity_line(ax, x, y)
        self.pearson_, self.spearman_ = correlations(x, y)
        what = "query loss" if self.target == "loss" else "query prediction"
        truth = _GROUND_TRUTHS.get(self.ground_truth, self.ground_truth)
        ax.set_xlabel(f"Predicted change of the {what} (influence / n_train)")
        ax.set_ylabel(f"Actual change ({truth})")
        ax.set_title(
            f"Pearson r = {fmt(self.pearson_)}, "
            f"Spearman $\\rho$ = {fmt(self.spearman_)}"
        )
        ax.legend(loc="best", fontsize=8)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
