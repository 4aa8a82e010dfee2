"""Several curvature backends' scores against a reference backend's."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

from ._common import check_count, correlations, fmt, identity_line

_N_QUERIES = 20


def _name(curvature: Any) -> str:
    return curvature if isinstance(curvature, str) else type(curvature).__name__


class CurvatureComparisonDisplay:
    """Influence under several curvature backends against a reference.

    One panel per backend: its scores ``S[j, i]`` (every query and training
    row) against the reference backend's on the same queries, with the line
    ``y = x`` and, in the title, the Pearson and Spearman correlations and
    the least-squares scale ``sum(x y) / sum(x^2)`` (1 when the magnitudes
    agree; a damping that dominates a backend's curvature shows as a scale
    far from 1 even when the ranking is right).

    Create it with :meth:`from_estimator` or :meth:`from_predictions`; the
    constructor only stores.

    Parameters
    ----------
    reference_scores : array-like
        The reference backend's scores.
    scores : list of array-like, each of the shape of ``reference_scores``
        The compared backends' scores.
    names : list of str
        The compared backends' names, one per entry of ``scores``.
    reference : str, default="exact"
        The reference backend's name.

    Attributes
    ----------
    figure_ : matplotlib.figure.Figure
    ax_ : ndarray of matplotlib.axes.Axes of shape (n_backends,)
        One panel per compared backend.
    scatters_ : list of matplotlib.collections.PathCollection
    lines_ : list of matplotlib.lines.Line2D
        The ``y = x`` lines.
    pearson_, spearman_, scale_ : ndarray of shape (n_backends,)
        The numbers in the titles.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.display import CurvatureComparisonDisplay
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), LogisticRegression())
    >>> scorer = InfluenceScorer(model, damping=1e-3).fit(X[:200], y[:200])
    >>> disp = CurvatureComparisonDisplay.from_estimator(
    ...     scorer, X[:200], y[:200], curvatures=["cg", "identity"],
    ...     X_query=X[200:210], y_query=y[200:210],
    ... )
    >>> bool(disp.pearson_[0] > 0.999)  # CG converges to the exact solve
    True
    """

    def __init__(
        self,
        reference_scores: ArrayLike,
        scores: list,
        names: list,
        *,
        reference: str = "exact",
    ) -> None:
        self.reference_scores = reference_scores
        self.scores = scores
        self.names = names
        self.reference = reference

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: Any,
        y: ArrayLike,
        *,
        curvatures: list,
        reference: Any = "exact",
        X_query: Any = None,
        y_query: ArrayLike | None = None,
        target: str = "loss",
        ax: Any = None,
    ) -> CurvatureComparisonDisplay:
        """Score the same queries under each backend and plot them.

        The fitted model is frozen (``FrozenEstimator(estimator.estimator_)``)
        and a clone of ``estimator`` with each curvature is fitted on
        ``X, y``, so only the curvature differs; the other parameters
        (``damping``, ``train_gradient``, ...) are the scorer's.

        Parameters
        ----------
        estimator : InfluenceScorer
            Fitted on ``X, y`` (without ``sample_weight``).
        X : array-like of shape (n_samples_fit, n_features)
            Its training inputs.
        y : array-like of shape (n_samples_fit,)
            Its training targets.
        curvatures : list of str or CurvatureBackend
            The compared backends (names or objects), one panel each.
        reference : str or CurvatureBackend, default="exact"
            The backend on the x axes.
        X_query : array-like of shape (n_query, n_features), default=None
            The queries; ``None``: the first 20 training rows.
        y_query : array-like of shape (n_query,), default=None
            Their targets (``None`` with ``X_query=None``: the training ones).
        target : {"loss", "prediction"}, default="loss"
        ax : matplotlib Axes or array-like of Axes, default=None
            One Axes per backend; a new figure when ``None``.

        Returns
        -------
        display : CurvatureComparisonDisplay
        """
        check_is_fitted(estimator)
        if isinstance(curvatures, str) or not len(curvatures):
            raise ValueError(
                "curvatures must be a non-empty list of backends (names or "
                f"objects), e.g. ['cg', 'lowrank']; got {curvatures!r}."
            )
        if len(X) != estimator.n_samples_fit_ or len(y) != len(X):
            raise ValueError(
                "X and y must be the data the scorer was fitted on, with "
                f"{estimator.n_samples_fit_} rows; got {len(X)} and {len(y)}."
            )
        if X_query is None:
            rows = np.arange(min(_N_QUERIES, len(X)))
            X_query, y_query = _safe_indexing(X, rows), _safe_indexing(y, rows)
        frozen = FrozenEstimator(estimator.estimator_)

        def scores(curvature):
            scorer = clone(estimator).set_params(estimator=frozen, curvature=curvature)
            return scorer.fit(X, y).influence(X_query, y_query, target=target)

        disp = cls(
            scores(reference),
            [scores(c) for c in curvatures],
            [_name(c) for c in curvatures],
            reference=_name(reference),
        )
        return disp.plot(ax=ax)

    @classmethod
    def from_predictions(
        cls,
        reference_scores: ArrayLike,
        scores: dict,
        *,
        reference: str = "reference",
        ax: Any = None,
    ) -> CurvatureComparisonDisplay:
        """Plot scores computed elsewhere.

        Parameters
        ----------
        reference_scores : array-like
            The reference backend's scores.
        scores : dict of str to array-like
            Each compared backend's scores, of the same shape.
        reference : str, default="reference"
            The reference's name, for the axis labels.
        ax : matplotlib Axes or array-like of Axes, default=None

        Returns
        -------
        display : CurvatureComparisonDisplay
        """
        if not isinstance(scores, dict) or not scores:
            raise ValueError(
                "scores must be a non-empty dict {backend name: scores}; got "
                f"{type(scores).__name__}."
            )
        disp = cls(
            reference_scores,
            list(scores.values()),
            [str(k) for k in scores],
            reference=reference,
        )
        return disp.plot(ax=ax)

    def plot(self, ax: Any = None) -> CurvatureComparisonDisplay:
        """Draw one panel per backend.

        Parameters
        ----------
        ax : matplotlib Axes or array-like of Axes, default=None
            One Axes per backend (a single Axes for one backend); a new
            figure when ``None``.

        Returns
        -------
        display : CurvatureComparisonDisplay
            ``self``, with ``figure_`` and ``ax_`` set.
        """
        import matplotlib.pyplot as plt

        n = check_count(len(self.scores), "the number of compared backends")
        if len(self.names) != n:
            raise ValueError(
                f"names must have one entry per scores array ({n}); got "
                f"{len(self.names)}."
            )
        x = np.ravel(np.asarray(self.reference_scores, dtype=float))
        ys = []
        for name, s in zip(self.names, self.scores, strict=True):
            if np.shape(s) != np.shape(self.reference_scores):
                raise ValueError(
                    f"The scores of {name!r} have shape {np.shape(s)}; the "
                    f"reference's have {np.shape(self.reference_scores)}."
                )
            ys.append(np.ravel(np.asarray(s, dtype=float)))
        if ax is None:
            _, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
            axes = axes[0]
        else:
            axes = np.ravel(np.asarray(ax, dtype=object))
            if len(axes) != n:
                raise ValueError(
                    f"ax must hold one Axes per compared backend ({n}); got "
                    f"{len(axes)}."
                )
        self.scatters_, self.lines_ = [], []
        self.pearson_, self.spearman_ = np.empty(n), np.empty(n)
        self.scale_ = np.empty(n)
        xx = float(x @ x)
        for j, (a, name, y) in enumerate(zip(axes, self.names, ys, strict=True)):
            self.scatters_.append(a.scatter(x, y, s=8, alpha=0.5))
            self.lines_.append(identity_line(a, x, y))
            self.pearson_[j], self.spearman_[j] = correlations(x, y)
            self.scale_[j] = float(x @ y) / xx if xx > 0 else float("nan")
            a.set_xlabel(f"{self.reference} scores")
            a.set_ylabel(f"{name} scores")
            a.set_title(
                f"{name}: Pearson r = {fmt(self.pearson_[j])},\n"
                f"Spearman $\\rho$ = {fmt(self.spearman_[j])}, "
                f"scale {self.scale_[j]:.3g}",
                fontsize=9,
            )
        self.ax_ = np.asarray(axes, dtype=object)
        self.figure_ = self.ax_[0].figure
        return self
