"""Backends by name: the public vocabulary of ``curvature=``."""

from __future__ import annotations

from typing import Any

from sklearn.base import clone

from .._constants import AUTO_EXACT_MAX_PARAMS
from ._base import CurvatureBackend
from ._blockggn import BlockGGNCurvature
from ._cg import CGCurvature
from ._ekfac import EKFACCurvature
from ._exact import ExactCurvature
from ._ggn import GGNCurvature
from ._kfac import KFACCurvature
from ._lissa import LiSSACurvature
from ._lowrank import LowRankCurvature
from ._simple import DiagonalCurvature, EFCurvature, IdentityCurvature

CURVATURES: dict[str, type[CurvatureBackend]] = {
    "exact": ExactCurvature,
    "cg": CGCurvature,
    "lissa": LiSSACurvature,
    "ef": EFCurvature,
    "diagonal": DiagonalCurvature,
    "ggn": GGNCurvature,
    "blockggn": BlockGGNCurvature,
    "kfac": KFACCurvature,
    "ekfac": EKFACCurvature,
    "lowrank": LowRankCurvature,
    "identity": IdentityCurvature,
}


def make_curvature(
    curvature: str | CurvatureBackend,
    adapter: Any,
    *,
    random_state: Any = None,
    gauss_newton: bool = False,
) -> CurvatureBackend:
    """An unfitted backend for ``curvature`` (a name, ``"auto"`` or an object).

    ``"auto"`` is ``"exact"`` up to ``AUTO_EXACT_MAX_PARAMS`` parameters and
    ``"cg"`` above; with ``gauss_newton=True`` (for curvatures taken away
    from the training optimum, where the Hessian can be indefinite), and for
    every adapter whose objective is not convex (``adapter.is_convex`` is
    ``False``: networks, whose Hessian is indefinite away from a minimum, as
    after SGD or Adam), it is the Gauss-Newton family instead: ``"ggn"``
    (dense) up to ``AUTO_EXACT_MAX_PARAMS`` and ``CGCurvature(operator=
    "ggn")`` above.  The returned backend says what was picked: its class
    and ``repr`` (``GGNCurvature()``, ``CGCurvature(operator='ggn')``),
    which ``InfluenceScorer.curvature_`` holds.  Objects are cloned, never
    fitted in place.  A backend with a ``random_state`` parameter left at
    ``None`` receives ``random_state``.
    """
    if isinstance(curvature, str) and curvature == "auto":
        gauss_newton = gauss_newton or not getattr(adapter, "is_convex", True)
        small = adapter.n_params <= AUTO_EXACT_MAX_PARAMS
        if gauss_newton:
            curvature = "ggn" if small else CGCurvature(operator="ggn")
        else:
            curvature = "exact" if small else "cg"
    if isinstance(curvature, str):
        if curvature not in CURVATURES:
            raise ValueError(
                f"Unknown curvature {curvature!r}; choose one of "
                f"{sorted(CURVATURES) + ['auto']} or pass a backend object."
            )
        backend = CURVATURES[curvature]()
    else:
        backend = clone(curvature)
    params = backend.get_params(deep=False)
    if "random_state" in params and params["random_state"] is None:
        backend.set_params(random_state=random_state)
    return backend
