"""Backends by name: the public vocabulary of ``curvature=``."""

from __future__ import annotations

from typing import Any

from sklearn.base import clone

from .._constants import AUTO_EXACT_MAX_PARAMS
from ._base import CurvatureBackend
from ._cg import CGCurvature
from ._exact import ExactCurvature

CURVATURES: dict[str, type[CurvatureBackend]] = {
    "exact": ExactCurvature,
    "cg": CGCurvature,
}


def make_curvature(curvature: str | CurvatureBackend, adapter: Any) -> CurvatureBackend:
    """An unfitted backend for ``curvature`` (a name, ``"auto"`` or an object).

    ``"auto"`` is ``"exact"`` up to ``AUTO_EXACT_MAX_PARAMS`` parameters and
    ``"cg"`` above.  Objects are cloned, never fitted in place.
    """
    if isinstance(curvature, str):
        if curvature == "auto":
            curvature = "exact" if adapter.n_params <= AUTO_EXACT_MAX_PARAMS else "cg"
        if curvature not in CURVATURES:
            raise ValueError(
                f"Unknown curvature {curvature!r}; choose one of "
                f"{sorted(CURVATURES) + ['auto']} or pass a backend object."
            )
        return CURVATURES[curvature]()
    return clone(curvature)
