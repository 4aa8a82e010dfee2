"""Curvature backends: fit once on the training objective, then ``solve(V)``."""

from ._base import CurvatureBackend
from ._cg import CGCurvature
from ._exact import ExactCurvature
from ._registry import CURVATURES, make_curvature

__all__ = [
    "CURVATURES",
    "CGCurvature",
    "CurvatureBackend",
    "ExactCurvature",
    "make_curvature",
]
