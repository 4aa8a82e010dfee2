"""What the displays share: axes, thumbnails, row labels, correlations."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def new_axes(ax: Any, figsize: tuple[float, float] | None = None) -> Any:
    """``ax``, or the axes of a new figure."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    return ax


def check_count(value: Any, name: str, low: int = 1) -> int:
    """An integer ``>= low``, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


def rows_of(X: Any, indices: ArrayLike) -> NDArray:
    """Rows ``indices`` (positions) of an array or DataFrame, as float64."""
    indices = np.asarray(indices, dtype=np.intp)
    if hasattr(X, "iloc"):
        return np.asarray(X.iloc[indices], dtype=float)
    if hasattr(X, "toarray"):  # scipy.sparse
        return np.asarray(X[indices].toarray(), dtype=float)
    return np.asarray(np.asarray(X)[indices], dtype=float)


def row_labels(X: Any, indices: ArrayLike) -> NDArray:
    """The DataFrame index of the rows at ``indices``, else the positions."""
    indices = np.asarray(indices, dtype=np.intp)
    index = getattr(X, "index", None)
    if index is None:
        return indices
    return np.asarray(index)[indices]


def check_image_shape(image_shape: Any, n_features: int) -> tuple[int, int]:
    """A ``(height, width)`` whose product is the number of features."""
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] != n_features:
        raise ValueError(
            f"image_shape must be (height, width) with height * width equal to the "
            f"number of features ({n_features}); got {image_shape!r}. Pass e.g. "
            "image_shape=(8, 8) for the 64 pixels of scikit-learn's digits, or "
            "leave it None for a bar chart."
        )
    return shape


def thumbnail(ax: Any, bounds: list[float], image: NDArray, title: str) -> Any:
    """An inset of ``ax`` (axes fraction ``bounds``) showing ``image``."""
    inset = ax.inset_axes(bounds)
    inset.imshow(image, cmap="gray_r", interpolation="nearest")
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_title(title, fontsize=7)
    return inset


def correlations(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Pearson and Spearman correlation; NaN when either side is constant or
    there are fewer than two points (no warning)."""
    from scipy import stats

    x, y = np.ravel(np.asarray(x, float)), np.ravel(np.asarray(y, float))
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    return float(np.corrcoef(x, y)[0, 1]), float(np.corrcoef(rx, ry)[0, 1])


def identity_line(ax: Any, x: NDArray, y: NDArray) -> Any:
    """The ``y = x`` line across the range of both, dashed grey."""
    both = np.concatenate([np.ravel(x), np.ravel(y)])
    both = both[np.isfinite(both)]
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    (line,) = ax.plot(
        [lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="grey", lw=1
    )
    line.set_label("y = x")
    return line


def fmt(value: float) -> str:
    """A correlation for a title: 3 decimals, or "n/a"."""
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"
