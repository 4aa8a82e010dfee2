"""Backends by name: the public vocabulary of ``curvature=``."""

from __future__ import annotations

from typing import Any

from sklearn.base import clone

from .._constants import AUTO_EXACT_MAX_PARAMS
from ..utils._chunks import dense_budget
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
    memory_budget: int | None = None,
) -> CurvatureBackend:
    """An unfitted backend for ``curvature`` (a name, ``"auto"`` or an object).

    ``"auto"`` is ``"exact"`` for a convex objective while its dense ``p x
    p`` factor fits the memory budget (``memory_budget`` bytes; ``None``:
    ``DENSE_MEMORY_BUDGET_BYTES``, 1 GiB, about 11,500 parameters) and
    ``"cg"`` above.  The factor costs ``n p^2`` flops for the closed-form
    Hessian and ``p^3 / 3`` for Cholesky once, then ``p^2`` per right-hand
    side; CG costs ``~n p`` per iteration per right-hand side, and
    self-influence needs one right-hand side per training row.  Measured
    (``LogisticRegression(C=0.1)``, 10 classes, n = 5,000, d = 600, so p =
    6,010, one BLAS thread on a shared 2-core machine; ``InfluenceScorer``
    fit, ``influence`` of 20 queries, self-influence): ``"exact"`` 9.2 s,
    0.09 s and 7.1 s for all 5,000 rows; ``"cg"`` 177 s (its fit-time
    optimum check is 33 solves), 179 s, and 411 s for 50 rows, so ~11 h
    for all (agreement 1e-8).  The dense factor wins from the first query
    on, so the rule is the memory budget, not a parameter count.
    With ``gauss_newton=True`` (for curvatures taken away
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
        p = int(adapter.n_params)
        fits = 8 * p * p <= dense_budget(memory_budget)
        if gauss_newton:
            # a network's dense GGN is assembled from p products: keep the cap
            small = fits and p <= AUTO_EXACT_MAX_PARAMS
            curvature = "ggn" if small else CGCurvature(operator="ggn")
        else:
            curvature = "exact" if fits else "cg"
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
