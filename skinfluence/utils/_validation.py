"""Input checks shared by the influence math and the ground truths."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def check_indices(indices: ArrayLike, n: int) -> NDArray:
    """Training rows as non-negative integers; a boolean mask is accepted."""
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"A boolean mask must have shape ({n},); got {idx.shape}.")
        return np.flatnonzero(idx)
    if idx.ndim > 1:
        raise ValueError(
            f"indices must be a 1-D array of training rows or a boolean mask of "
            f"shape ({n},); got an array of shape {idx.shape}. Pass a flat list "
            "(e.g. np.ravel(indices)) and read the result's rows in that order."
        )
    idx = idx.reshape(-1)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(
            f"indices must be integers or a boolean mask; got {idx.dtype}. "
            "Pass integer row positions (e.g. np.asarray(indices, dtype=int))."
        )
    idx = idx.astype(np.intp)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(
            f"indices must lie in [-{n}, {n}) (the {n} rows of the training "
            f"set); got {idx.min()}..{idx.max()}. Index the rows of the X given "
            "to fit."
        )
    return np.where(idx < 0, idx + n, idx)
