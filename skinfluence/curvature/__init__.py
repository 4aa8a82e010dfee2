"""Curvature backends: fit once on the training objective, then ``solve(V)``."""

from ._base import CurvatureBackend
from ._blockggn import BlockGGNCurvature
from ._cg import CGCurvature
from ._ekfac import EKFACCurvature
from ._exact import ExactCurvature
from ._ggn import GGNCurvature
from ._kfac import KFACCurvature, LayerFactors
from ._lissa import LiSSACurvature
from ._lowrank import LowRankCurvature
from ._registry import CURVATURES, make_curvature
from ._simple import DiagonalCurvature, EFCurvature, IdentityCurvature

__all__ = [
    "CURVATURES",
    "BlockGGNCurvature",
    "CGCurvature",
    "CurvatureBackend",
    "DiagonalCurvature",
    "EFCurvature",
    "EKFACCurvature",
    "ExactCurvature",
    "GGNCurvature",
    "IdentityCurvature",
    "KFACCurvature",
    "LayerFactors",
    "LiSSACurvature",
    "LowRankCurvature",
    "make_curvature",
]
