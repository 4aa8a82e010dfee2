"""Label-noise injection for experiments on bundled or generated data."""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils import check_random_state

from .utils._sklearn_compat import Interval, StrOptions, validate_params


@validate_params(
    {
        "y": ["array-like"],
        "rate": [Interval(Real, 0, 1, closed="both")],
        "kind": [StrOptions({"symmetric", "pair"})],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def inject_label_noise(
    y: ArrayLike, rate: float, *, kind: str = "symmetric", random_state: Any = None
) -> tuple[NDArray, NDArray]:
    """Flip a fraction of the labels, reproducibly.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Clean labels (any type, at least two classes).
    rate : float in [0, 1]
        Fraction of samples whose label is changed (``round(rate * n)``).
    kind : {"symmetric", "pair"}, default="symmetric"
        ``"symmetric"``: the new label is uniform over the other classes.
        ``"pair"``: class ``c`` becomes the next class in sorted order
        (cyclically), the structured noise of co-teaching benchmarks.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    y_noisy : ndarray of shape (n_samples,)
    is_noisy : ndarray of bool of shape (n_samples,)
        True where the label was changed (always to a different class).

    Examples
    --------
    >>> from skinfluence.datasets import inject_label_noise
    >>> y_noisy, flipped = inject_label_noise([0, 1, 2] * 10, 0.2, random_state=0)
    >>> int(flipped.sum()), bool((y_noisy != [0, 1, 2] * 10)[flipped].all())
    (6, True)
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("Label noise needs at least two classes.")
    rng = check_random_state(random_state)
    n = len(y)
    flip = rng.choice(n, size=int(round(rate * n)), replace=False)
    codes = np.searchsorted(classes, y)
    new = codes.copy()
    K = len(classes)
    if kind == "pair":
        new[flip] = (codes[flip] + 1) % K
    else:
        shift = rng.randint(1, K, size=len(flip))
        new[flip] = (codes[flip] + shift) % K
    is_noisy = np.zeros(n, dtype=bool)
    is_noisy[flip] = True
    return classes[new], is_noisy
