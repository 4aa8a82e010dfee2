"""A query and the training rows that most support and oppose it."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted

from ._common import (
    check_count,
    check_image_shape,
    new_axes,
    row_labels,
    rows_of,
    thumbnail,
)

_AXIS_LABEL = {
    "loss": "Support for the query's label (influence S)",
    "prediction": "Support for the prediction (-S, target='prediction')",
}


class ExplanationDisplay:
    """A query with its most helpful and most harmful training rows.

    "Helpful" rows support the query's label (``target="loss"``) or its
    predicted class (``target="prediction"``); "harmful" rows oppose it, as
    in :meth:`skinfluence.InfluenceScorer.explain`.  With ``image_shape``
    the rows are drawn as image thumbnails (the query on the left, the
    helpful rows on top, the harmful ones below, each titled with its row,
    its label and its score); without, as a horizontal bar chart of the
    scores labelled by row (a DataFrame's index when the training rows are
    one).

    Create it with :meth:`from_estimator`; the constructor only stores.

    Parameters
    ----------
    helpful_indices, harmful_indices : array-like of shape (k,)
        Rows of the training ``X`` (positions), most helpful / most harmful
        first.
    helpful_scores, harmful_scores : array-like of shape (k,)
        Their support scores.
    target : {"loss", "prediction"}, default="loss"
    row_labels : dict with keys "helpful" and "harmful", default=None
        The labels shown for the rows (e.g. a DataFrame's index); ``None``:
        the positions.
    train_labels : dict with keys "helpful" and "harmful", default=None
        The rows' targets, shown with them.
    query_image : array-like of shape (n_features,), default=None
        The query's features (for thumbnails).
    train_images : dict with keys "helpful" and "harmful", default=None
        The rows' features, each of shape (k, n_features) (for thumbnails).
    query_label : object, default=None
        The query's target.
    query_prediction : object, default=None
        The model's prediction for the query.
    image_shape : tuple of int, default=None
        ``(height, width)``: draw thumbnails.

    Attributes
    ----------
    figure_ : matplotlib.figure.Figure
    ax_ : matplotlib.axes.Axes
        The axes drawn on (for thumbnails, the frame holding them, axis off).
    bars_helpful_, bars_harmful_ : matplotlib.container.BarContainer
        The bars (bar chart only; ``None`` for thumbnails).
    query_ax_ : matplotlib.axes.Axes
        The query's thumbnail (``None`` for the bar chart).
    helpful_axes_, harmful_axes_ : list of matplotlib.axes.Axes
        The rows' thumbnails (empty for the bar chart).

    See Also
    --------
    skinfluence.InfluenceScorer.explain : The rows and scores shown.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.display import ExplanationDisplay
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> X = X / 16
    >>> scorer = InfluenceScorer(LogisticRegression(max_iter=2000)).fit(
    ...     X[:300], y[:300]
    ... )
    >>> disp = ExplanationDisplay.from_estimator(
    ...     scorer, X[[300]], y[[300]], X_train=X[:300], y_train=y[:300],
    ...     image_shape=(8, 8),
    ... )
    >>> len(disp.helpful_axes_), len(disp.harmful_axes_)
    (5, 5)
    """

    def __init__(
        self,
        helpful_indices: ArrayLike,
        helpful_scores: ArrayLike,
        harmful_indices: ArrayLike,
        harmful_scores: ArrayLike,
        *,
        target: str = "loss",
        row_labels: dict | None = None,
        train_labels: dict | None = None,
        query_image: ArrayLike | None = None,
        train_images: dict | None = None,
        query_label: Any = None,
        query_prediction: Any = None,
        image_shape: tuple[int, int] | None = None,
    ) -> None:
        self.helpful_indices = helpful_indices
        self.helpful_scores = helpful_scores
        self.harmful_indices = harmful_indices
        self.harmful_scores = harmful_scores
        self.target = target
        self.row_labels = row_labels
        self.train_labels = train_labels
        self.query_image = query_image
        self.train_images = train_images
        self.query_label = query_label
        self.query_prediction = query_prediction
        self.image_shape = image_shape

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: ArrayLike,
        y: ArrayLike | None = None,
        *,
        X_train: Any = None,
        y_train: ArrayLike | None = None,
        k: int = 5,
        target: str = "loss",
        image_shape: tuple[int, int] | None = None,
        ax: Any = None,
    ) -> ExplanationDisplay:
        """Explain one query with a fitted scorer and plot it.

        Parameters
        ----------
        estimator : InfluenceScorer
            Fitted.
        X : array-like of shape (1, n_features)
            The query: one row (e.g. ``X_test[[j]]``).
        y : array-like of shape (1,), default=None
            Its target; required for ``target="loss"``.
        X_train : array-like or DataFrame of shape (n_samples_fit, \
n_features), default=None
            The ``X`` the scorer was fitted on: needed for thumbnails; a
            DataFrame's index labels the bars.
        y_train : array-like of shape (n_samples_fit,), default=None
            Its targets, shown with the rows.
        k : int, default=5
            Rows per side.
        target : {"loss", "prediction"}, default="loss"
            As :meth:`~skinfluence.InfluenceScorer.explain`.
        image_shape : tuple of int, default=None
            ``(height, width)`` of each row as an image (``(8, 8)`` for
            scikit-learn's digits): draw thumbnails instead of bars.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.

        Returns
        -------
        display : ExplanationDisplay
        """
        check_is_fitted(estimator)
        n_query = X.shape[0] if hasattr(X, "shape") else len(X)
        if n_query != 1:
            raise ValueError(
                f"X must hold one query row; got {n_query}. Pass X[[j]] (a 2-D "
                "slice) for query j, or call explain() for several queries."
            )
        n_fit = estimator.n_samples_fit_
        for name, arr in (("X_train", X_train), ("y_train", y_train)):
            n_arr = None if arr is None else np.shape(arr)[0]
            if n_arr is not None and n_arr != n_fit:
                raise ValueError(
                    f"{name} must be the data the scorer was fitted on, with "
                    f"{n_fit} rows; got {n_arr}."
                )
        if image_shape is not None and X_train is None:
            raise ValueError(
                "image_shape needs X_train (the X the scorer was fitted on) to "
                "draw the training rows; pass X_train=..., or leave image_shape "
                "None for a bar chart."
            )
        why = estimator.explain(X, y, k=k, target=target)
        sides = {
            "helpful": why.helpful_indices[0],
            "harmful": why.harmful_indices[0],
        }
        labels = {s: row_labels(X_train, i) for s, i in sides.items()}
        targets = None
        if y_train is not None:
            yt = np.asarray(y_train)
            targets = {s: yt[i] for s, i in sides.items()}
        images = query = None
        if image_shape is not None:
            check_image_shape(image_shape, rows_of(X_train, [0]).shape[1])
            images = {s: rows_of(X_train, i) for s, i in sides.items()}
            query = rows_of(X, [0])[0]
        prediction = None
        if getattr(estimator, "classes_", None) is not None or target == "prediction":
            prediction = estimator.predict(X)[0]
        disp = cls(
            why.helpful_indices[0],
            why.helpful_scores[0],
            why.harmful_indices[0],
            why.harmful_scores[0],
            target=target,
            row_labels=labels,
            train_labels=targets,
            query_image=query,
            train_images=images,
            query_label=None if y is None else np.asarray(y).ravel()[0],
            query_prediction=prediction,
            image_shape=image_shape,
        )
        return disp.plot(ax=ax)

    def _query_title(self) -> str:
        parts = []
        if self.query_label is not None:
            parts.append(f"label {self.query_label}")
        if self.query_prediction is not None:
            pred = self.query_prediction
            parts.append(
                f"predicted {pred:.3g}" if _is_float(pred) else f"predicted {pred}"
            )
        return "Query" + (f" ({', '.join(parts)})" if parts else "")

    def _labels(self, side: str, indices) -> list[str]:
        names = indices if self.row_labels is None else self.row_labels[side]
        out = []
        for j, name in enumerate(names):
            text = f"row {name}"
            if self.train_labels is not None:
                text += f" (y={self.train_labels[side][j]})"
            out.append(text)
        return out

    def plot(self, ax: Any = None) -> ExplanationDisplay:
        """Draw the explanation.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.  Thumbnails are
            inset into it.

        Returns
        -------
        display : ExplanationDisplay
            ``self``, with ``figure_`` and ``ax_`` set.
        """
        if self.target not in ("loss", "prediction"):
            raise ValueError(
                f"target must be 'loss' or 'prediction'; got {self.target!r}."
            )
        h_idx = np.asarray(self.helpful_indices)
        b_idx = np.asarray(self.harmful_indices)
        h_val = np.asarray(self.helpful_scores, dtype=float)
        b_val = np.asarray(self.harmful_scores, dtype=float)
        k = check_count(len(h_idx), "the number of helpful rows")
        if not (len(h_val) == k and len(b_idx) == len(b_val) == k):
            raise ValueError(
                "helpful_indices, helpful_scores, harmful_indices and "
                f"harmful_scores must have the same length; got {len(h_idx)}, "
                f"{len(h_val)}, {len(b_idx)} and {len(b_val)}."
            )
        self.bars_helpful_ = self.bars_harmful_ = self.query_ax_ = None
        self.helpful_axes_, self.harmful_axes_ = [], []
        if self.image_shape is None:
            ax = new_axes(ax, figsize=(6.0, 0.9 + 0.32 * 2 * k))
            self._plot_bars(ax, h_idx, h_val, b_idx, b_val)
        else:
            ax = new_axes(ax, figsize=(1.25 * (k + 1.4), 3.4))
            self._plot_images(ax, h_idx, h_val, b_idx, b_val)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    def _plot_bars(self, ax, h_idx, h_val, b_idx, b_val) -> None:
        k = len(h_idx)
        self.bars_helpful_ = ax.barh(
            np.arange(k), h_val, color="tab:green", label="helpful"
        )
        self.bars_harmful_ = ax.barh(
            np.arange(k, 2 * k), b_val, color="tab:red", label="harmful"
        )
        ax.set_yticks(
            np.arange(2 * k),
            self._labels("helpful", h_idx) + self._labels("harmful", b_idx),
        )
        ax.invert_yaxis()
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_xlabel(_AXIS_LABEL[self.target])
        ax.set_ylabel("Training row")
        ax.set_title(f"{self._query_title()}: top {k} helpful and harmful rows")
        ax.legend(loc="best", fontsize=8)

    def _plot_images(self, ax, h_idx, h_val, b_idx, b_val) -> None:
        if self.query_image is None or self.train_images is None:
            raise ValueError(
                "Thumbnails need query_image and train_images; build the display "
                "with from_estimator(..., X_train=..., image_shape=...)."
            )
        k = len(h_idx)
        shape = check_image_shape(self.image_shape, np.size(self.query_image))
        ax.set_axis_off()
        width = 1.0 / (k + 1.4)
        size = 0.8 * width
        self.query_ax_ = thumbnail(
            ax,
            [0.0, 0.3, size, 0.34],
            np.reshape(self.query_image, shape),
            self._query_title().replace(" (", "\n("),
        )
        for side, idx, val, y0, store in (
            ("helpful", h_idx, h_val, 0.53, self.helpful_axes_),
            ("harmful", b_idx, b_val, 0.03, self.harmful_axes_),
        ):
            names = self._labels(side, idx)
            images = np.asarray(self.train_images[side], dtype=float)
            for j in range(k):
                inset = thumbnail(
                    ax,
                    [(j + 1.4) * width, y0, size, 0.34],
                    images[j].reshape(shape),
                    f"{names[j]}\n{val[j]:+.3g}",
                )
                store.append(inset)
            store[0].set_ylabel(side, fontsize=8)
        ax.set_title(
            f"Top {k} helpful (top) and harmful (bottom) training rows; "
            + (
                "score: support for the label"
                if self.target == "loss"
                else "score: support for the prediction"
            ),
            fontsize=8,
        )


def _is_float(value: Any) -> bool:
    return isinstance(value, float | np.floating)
