"""The training rows a detector flags, with their given (and suggested) labels."""

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


class LabelIssuesDisplay:
    """The most suspicious flagged rows, with the given and suggested label.

    From a fitted :class:`~skinfluence.NoisyLabelDetector`: the flagged rows
    (``noisy_mask_``) by decreasing ``scores_``.  From a fitted
    :class:`~skinfluence.Relabeler`: the relabelled rows
    (``relabeled_mask_``) by decreasing ``relabel_gain_``, with the
    suggested label (``y_relabeled_``).  With ``image_shape`` the rows are
    image thumbnails titled ``given -> suggested``; without, a horizontal
    bar chart of the scores labelled by row (a DataFrame's index) and
    labels.

    Create it with :meth:`from_estimator`; the constructor only stores.

    Parameters
    ----------
    indices : array-like of shape (n_shown,)
        Rows of the training ``X`` (positions), most suspicious first.
    scores : array-like of shape (n_shown,)
        Their scores (suspicion, or relabelling gain).
    given_labels : array-like of shape (n_shown,)
    suggested_labels : array-like of shape (n_shown,), default=None
        A relabeler's suggestions; ``None`` for a detector.
    row_labels : array-like of shape (n_shown,), default=None
        Shown for the rows (a DataFrame's index); ``None``: ``indices``.
    images : array-like of shape (n_shown, n_features), default=None
        The rows' features, for thumbnails.
    image_shape : tuple of int, default=None
        ``(height, width)``: draw thumbnails.
    score_name : str, default="Suspicion score"
        The bars' axis label.
    n_flagged : int, default=None
        How many rows were flagged in all (for the title).

    Attributes
    ----------
    figure_ : matplotlib.figure.Figure
    ax_ : matplotlib.axes.Axes
        The axes drawn on (for thumbnails, the frame holding them, axis off).
    bars_ : matplotlib.container.BarContainer or None
        The bars (bar chart only).
    image_axes_ : list of matplotlib.axes.Axes
        The thumbnails (empty for the bar chart).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinfluence import NoisyLabelDetector
    >>> from skinfluence.datasets import inject_label_noise
    >>> from skinfluence.display import LabelIssuesDisplay
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> y_noisy, flipped = inject_label_noise(y, 0.1, random_state=0)
    >>> detector = NoisyLabelDetector(
    ...     LogisticRegression(max_iter=2000), contamination=0.1
    ... ).fit(X / 16, y_noisy)
    >>> disp = LabelIssuesDisplay.from_estimator(
    ...     detector, X / 16, y_noisy, max_rows=8, image_shape=(8, 8)
    ... )
    >>> len(disp.image_axes_)
    8
    """

    def __init__(
        self,
        indices: ArrayLike,
        scores: ArrayLike,
        given_labels: ArrayLike,
        *,
        suggested_labels: ArrayLike | None = None,
        row_labels: ArrayLike | None = None,
        images: ArrayLike | None = None,
        image_shape: tuple[int, int] | None = None,
        score_name: str = "Suspicion score",
        n_flagged: int | None = None,
    ) -> None:
        self.indices = indices
        self.scores = scores
        self.given_labels = given_labels
        self.suggested_labels = suggested_labels
        self.row_labels = row_labels
        self.images = images
        self.image_shape = image_shape
        self.score_name = score_name
        self.n_flagged = n_flagged

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        X: Any,
        y: ArrayLike,
        *,
        max_rows: int = 10,
        image_shape: tuple[int, int] | None = None,
        ax: Any = None,
    ) -> LabelIssuesDisplay:
        """Show the rows a fitted detector or relabeler flags.

        Parameters
        ----------
        estimator : NoisyLabelDetector or Relabeler
            Fitted on ``X, y``.
        X : array-like or DataFrame of shape (n_samples, n_features)
            The training inputs it was fitted on (a DataFrame's index labels
            the rows).
        y : array-like of shape (n_samples,)
            The given labels it was fitted on.
        max_rows : int, default=10
            Most rows shown.
        image_shape : tuple of int, default=None
            ``(height, width)`` of each row as an image: draw thumbnails.
        ax : matplotlib Axes, default=None

        Returns
        -------
        display : LabelIssuesDisplay
        """
        max_rows = check_count(max_rows, "max_rows")
        from ..estimators import NoisyLabelDetector, Relabeler

        relabeler = isinstance(estimator, Relabeler)
        if relabeler:
            check_is_fitted(estimator, "y_relabeled_")
            mask = np.asarray(estimator.relabeled_mask_)
            score = np.asarray(estimator.relabel_gain_, dtype=float)
            name = "Relabelling gain"
        elif isinstance(estimator, NoisyLabelDetector):
            check_is_fitted(estimator, "noisy_mask_")
            mask = np.asarray(estimator.noisy_mask_)
            score = np.asarray(estimator.scores_, dtype=float)
            name = "Suspicion score"
        else:
            raise TypeError(
                "estimator must be a fitted NoisyLabelDetector or Relabeler; got "
                f"{type(estimator).__name__}. For other scores, build "
                "LabelIssuesDisplay(indices, scores, given_labels).plot()."
            )
        y = np.asarray(y)
        if len(y) != len(mask) or len(X) != len(mask):
            raise ValueError(
                f"X and y must be the data the estimator was fitted on, with "
                f"{len(mask)} rows; got {len(X)} and {len(y)}."
            )
        flagged = np.flatnonzero(mask)
        order = flagged[np.argsort(-score[flagged], kind="stable")][:max_rows]
        images = None
        if image_shape is not None:
            images = rows_of(X, order)
            check_image_shape(image_shape, np.shape(rows_of(X, [0]))[1])
        disp = cls(
            order,
            score[order],
            y[order],
            suggested_labels=(
                np.asarray(estimator.y_relabeled_)[order] if relabeler else None
            ),
            row_labels=row_labels(X, order),
            images=images,
            image_shape=image_shape,
            score_name=name,
            n_flagged=len(flagged),
        )
        return disp.plot(ax=ax)

    def _texts(self) -> list[str]:
        names = self.indices if self.row_labels is None else self.row_labels
        out = []
        for j, name in enumerate(names):
            label = f"given {self.given_labels[j]}"
            if self.suggested_labels is not None:
                label += f" -> {self.suggested_labels[j]}"
            out.append(f"row {name}: {label}")
        return out

    def plot(self, ax: Any = None, *, n_cols: int = 5) -> LabelIssuesDisplay:
        """Draw the rows.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.  Thumbnails are
            inset into it.
        n_cols : int, default=5
            Thumbnails per row of the grid.

        Returns
        -------
        display : LabelIssuesDisplay
            ``self``, with ``figure_`` and ``ax_`` set.
        """
        n_cols = check_count(n_cols, "n_cols")
        scores = np.asarray(self.scores, dtype=float)
        n = len(scores)
        if not len(self.indices) == len(self.given_labels) == n:
            raise ValueError(
                "indices, scores and given_labels must have the same length; got "
                f"{len(self.indices)}, {n} and {len(self.given_labels)}."
            )
        total = n if self.n_flagged is None else self.n_flagged
        kind = "relabelled" if self.suggested_labels is not None else "flagged"
        title = f"{n} of {total} {kind} rows, most suspicious first"
        self.bars_, self.image_axes_ = None, []
        if n == 0:
            ax = new_axes(ax)
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"No rows {kind}.", ha="center", va="center")
            ax.set_title(f"0 {kind} rows")
        elif self.image_shape is None:
            ax = new_axes(ax, figsize=(6.0, 0.9 + 0.32 * n))
            self.bars_ = ax.barh(np.arange(n), scores, color="tab:orange")
            ax.set_yticks(np.arange(n), self._texts())
            ax.invert_yaxis()
            ax.set_xlabel(self.score_name)
            ax.set_ylabel("Training row: label")
            ax.set_title(title)
        else:
            if self.images is None:
                raise ValueError(
                    "Thumbnails need images; build the display with "
                    "from_estimator(..., image_shape=...)."
                )
            images = np.asarray(self.images, dtype=float)
            shape = check_image_shape(self.image_shape, images.shape[1])
            cols = min(n_cols, n)
            rows = -(-n // cols)
            ax = new_axes(ax, figsize=(1.4 * cols, 1.6 * rows + 0.4))
            ax.set_axis_off()
            width, height = 1.0 / cols, 1.0 / rows
            texts = self._texts()
            for j in range(n):
                r, c = divmod(j, cols)
                text = texts[j].replace(": ", "\n") + f"\n{scores[j]:.3g}"
                self.image_axes_.append(
                    thumbnail(
                        ax,
                        [c * width, 1 - (r + 1) * height, 0.8 * width, 0.62 * height],
                        images[j].reshape(shape),
                        text,
                    )
                )
            ax.set_title(f"{title} ({self.score_name.lower()})", fontsize=9)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self
