"""Curvature backends: fit once on the training objective, then ``solve(V)``."""

from ._base import CurvatureBackend
from ._cg import CGCurvature
from ._exact import ExactCurvature
from ._ggn import GGNCurvature
from ._lissa import LiSSACurvature
from ._lowrank import LowRankCurvature
from ._registry import CURVATURES, make_curvature
from ._simple import DiagonalCurvature, EFCurvature, IdentityCurvature

__all__ = [
    "CURVATURES",
    "CGCurvature",
    "CurvatureBackend",
    "DiagonalCurvature",
    "EFCurvature",
    "ExactCurvature",
    "GGNCurvature",
    "IdentityCurvature",
    "LiSSACurvature",
    "LowRankCurvature",
    "make_curvature",
]
