"""The regression influence plot: studentized residuals against leverage."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted


class InfluencePlotDisplay:
    """Studentized residuals against leverage, sized by Cook's distance.

    The classical picture of which training rows drive a regression: far to
    the right (high leverage) and far from zero (large residual) means
    influential; Cook's distance is the marker area, its contour lines
    ``D = r^2 h / (p (1 - h))`` for the levels in ``cooks_levels`` are drawn,
    and the most influential rows are labelled by their index.

    Create it with :meth:`from_estimator`; the constructor only stores.

    Parameters
    ----------
    leverage : array-like of shape (n_samples,)
    studentized_residual : array-like of shape (n_samples,)
    cooks_distance : array-like of shape (n_samples,)
    index : array-like of shape (n_samples,)
        The row labels (a DataFrame's index, or row numbers).
    n_params : int
        Number of parameters ``p``, for the Cook's distance contours.
    residual_kind : str, default="internal"
        ``"internal"`` or ``"external"``: which studentization is plotted.
        Cook's distance contours ``D = r^2 h / (p (1 - h))`` hold for the
        internally studentized residual, so they are drawn for
        ``"internal"`` only.

    Attributes
    ----------
    figure_ : matplotlib.figure.Figure
    ax_ : matplotlib.axes.Axes
    scatter_ : matplotlib.collections.PathCollection
    contours_ : list of matplotlib.lines.Line2D
    annotations_ : list of matplotlib.text.Annotation
        One per labelled row.

    See Also
    --------
    skinfluence.InfluenceScorer.diagnostics : The table the plot is drawn from.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import LinearRegression
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.display import InfluencePlotDisplay
    >>> X, y = load_diabetes(return_X_y=True, as_frame=True)
    >>> scorer = InfluenceScorer(LinearRegression()).fit(X, y)
    >>> disp = InfluencePlotDisplay.from_estimator(scorer, n_labels=3)
    >>> len(disp.annotations_)
    3
    """

    def __init__(
        self,
        leverage: ArrayLike,
        studentized_residual: ArrayLike,
        cooks_distance: ArrayLike,
        index: ArrayLike,
        n_params: int,
        *,
        residual_kind: str = "internal",
    ) -> None:
        self.leverage = leverage
        self.studentized_residual = studentized_residual
        self.cooks_distance = cooks_distance
        self.index = index
        self.n_params = n_params
        self.residual_kind = residual_kind

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        *,
        residual: str = "internal",
        n_labels: int = 5,
        cooks_levels: tuple[float, ...] = (0.5, 1.0),
        ax: Any = None,
    ) -> InfluencePlotDisplay:
        """Compute the diagnostics of a fitted scorer and plot them.

        Parameters
        ----------
        estimator : InfluenceScorer
            Fitted, around a single-output closed-form model (regression, or
            binary classification).
        residual : {"internal", "external"}, default="internal"
            Internally or externally (leave-one-out dispersion) studentized
            residuals on the y axis; the Cook's distance contours are drawn
            for the internal ones, the residual they are defined with.
        n_labels : int, default=5
            How many rows, by decreasing Cook's distance, get their index.
        cooks_levels : tuple of float, default=(0.5, 1.0)
            Cook's distance contour levels.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.

        Returns
        -------
        display : InfluencePlotDisplay
        """
        check_is_fitted(estimator)
        if residual not in ("external", "internal"):
            raise ValueError(
                f"residual must be 'external' or 'internal'; got {residual!r}."
            )
        table = estimator.diagnostics()
        column = (
            "external_studentized_residual"
            if residual == "external"
            else "studentized_residual"
        )
        if table[column].isna().all():
            raise ValueError(
                "The influence plot needs a scalar residual per row; this model "
                "has several outputs (multiclass or multi-target). Plot "
                "diagnostics()['leverage'] and ['cooks_distance'] instead."
            )
        disp = cls(
            table["leverage"].to_numpy(),
            table[column].to_numpy(),
            table["cooks_distance"].to_numpy(),
            table.index.to_numpy(),
            estimator.adapter_.n_params,
            residual_kind=residual,
        )
        return disp.plot(ax=ax, n_labels=n_labels, cooks_levels=cooks_levels)

    def plot(
        self,
        ax: Any = None,
        *,
        n_labels: int = 5,
        cooks_levels: tuple[float, ...] = (0.5, 1.0),
        max_marker_size: float = 400.0,
    ) -> InfluencePlotDisplay:
        """Draw the plot.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        n_labels : int, default=5
            How many rows, by decreasing Cook's distance, get their index.
        cooks_levels : tuple of float, default=(0.5, 1.0)
            Cook's distance contour levels.
        max_marker_size : float, default=400.0
            Marker area (points^2) of the row with the largest Cook's distance.

        Returns
        -------
        display : InfluencePlotDisplay
            ``self``, with ``figure_`` and ``ax_`` set.
        """
        import matplotlib.pyplot as plt

        if not (isinstance(n_labels, int | np.integer) and n_labels >= 0):
            raise ValueError(f"n_labels must be an integer >= 0; got {n_labels!r}.")
        h = np.asarray(self.leverage, dtype=float)
        r = np.asarray(self.studentized_residual, dtype=float)
        d = np.nan_to_num(np.asarray(self.cooks_distance, dtype=float), nan=0.0)
        if ax is None:
            _, ax = plt.subplots()
        sizes = 10.0 + max_marker_size * d / max(float(d.max()), 1e-300)
        self.scatter_ = ax.scatter(h, r, s=sizes, alpha=0.5, edgecolors="k")
        ax.axhline(0.0, color="grey", lw=0.8)
        self.contours_ = []
        hmax = max(float(np.nanmax(h)) * 1.05, 1e-3)
        grid = np.linspace(max(float(np.nanmin(h)) * 0.95, 1e-4), min(hmax, 0.999), 200)
        p = self.n_params
        # the contours are of D = r_int^2 h / (p (1 - h)): internal residuals
        levels = cooks_levels if self.residual_kind == "internal" else ()
        for level in levels:
            bound = np.sqrt(level * p * (1 - grid) / grid)
            (line,) = ax.plot(grid, bound, ls="--", color="tab:red", lw=0.8)
            ax.plot(grid, -bound, ls="--", color="tab:red", lw=0.8)
            line.set_label(f"Cook's distance {level:g}")
            self.contours_.append(line)
        span = np.nanmax(np.abs(r)) if np.isfinite(r).any() else 1.0
        ax.set_ylim(-1.15 * span - 0.5, 1.15 * span + 0.5)
        self.annotations_ = []
        for i in np.argsort(-d, kind="stable")[:n_labels]:
            self.annotations_.append(
                ax.annotate(
                    str(self.index[i]),
                    (h[i], r[i]),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=8,
                )
            )
        ax.set_xlabel("Leverage $h_{ii}$")
        ax.set_ylabel(f"Studentized residual ({self.residual_kind})")
        ax.set_title("Influence plot (marker area: Cook's distance)")
        if self.contours_:
            ax.legend(loc="best", fontsize=8)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
