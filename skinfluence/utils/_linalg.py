"""Dense and stochastic views of matrix-free symmetric operators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.utils import check_random_state

from .._constants import HUTCHINSON_PROBES
from ._chunks import chunks, context_budget, dense_budget, format_bytes
from ._progress import progress


def check_dense_fits(
    p: int,
    what: str = "curvature matrix",
    *,
    blocks: list[int] | None = None,
    budget: int | None = None,
    shape: tuple[int, int] | None = None,
) -> None:
    """Refuse a dense ``p x p`` float64 matrix over the memory budget.

    Raises a ``ValueError`` naming the size, the budget (``budget`` bytes:
    ``InfluenceScorer(memory_budget=...)``; when ``None`` the enclosing
    :func:`~skinfluence.utils._chunks.memory_budget_context` or
    ``skinfluence._constants.DENSE_MEMORY_BUDGET_BYTES``) and the
    matrix-free backends that fit, before anything is allocated.  With
    ``blocks`` (the sizes of dense diagonal blocks) their total is checked
    instead, and the message names the largest block; with ``shape`` a dense
    ``shape[0] x shape[1]`` matrix (e.g. the per-sample gradients).
    """
    limit = dense_budget(budget)
    if shape is not None:
        need = 8 * int(shape[0]) * int(shape[1])
        shape = f"a {shape[0]} x {shape[1]} float64 matrix"
    elif blocks is not None:
        need = 8 * sum(int(b) ** 2 for b in blocks)
        shape = f"{len(blocks)} blocks, the largest {max(blocks)} x {max(blocks)}"
    else:
        need = 8 * int(p) ** 2
        shape = f"a {p} x {p} float64 matrix"
    if need > limit:
        source = (
            "skinfluence._constants.DENSE_MEMORY_BUDGET_BYTES, the default when "
            "memory_budget=None"
            if budget is None and context_budget() is None
            else "memory_budget"
        )
        raise ValueError(
            f"A dense {what} for {p} parameters needs {shape} "
            f"({format_bytes(need)}), over the dense memory budget of "
            f"{format_bytes(limit)} ({source}). Raise memory_budget (to at least "
            f"{format_bytes(need)}) or use a matrix-free curvature, whose memory "
            "grows with p rather than p^2: 'cg' (CGCurvature(operator='ggn') for a "
            "network), 'ekfac'/'kfac' for networks of nn.Linear layers, 'lissa', "
            "'lowrank' or 'diagonal'."
        )


def dense_from_matmat(
    matmat: Callable[[NDArray], NDArray],
    p: int,
    *,
    chunk: int = 256,
    verbose: int = 0,
    budget: int | None = None,
) -> NDArray:
    """Assemble a symmetric ``p x p`` operator, identity column block by block,
    symmetrised to remove rounding asymmetry; refused over the memory budget
    (:func:`check_dense_fits`)."""
    check_dense_fits(p, budget=budget)
    H = np.empty((p, p))
    blocks = list(chunks(p, chunk))
    for c in progress(blocks, desc="dense curvature", verbose=verbose):
        E = np.zeros((p, c.stop - c.start))
        E[np.arange(c.start, c.stop), np.arange(c.stop - c.start)] = 1.0
        H[:, c] = matmat(E)
    H += H.T
    H *= 0.5
    return H


def hutchinson_diagonal(
    matmat: Callable[[NDArray], NDArray], p: int, random_state: Any = 0
) -> NDArray:
    """Hutchinson estimate ``E[z * (A z)]`` of an operator's diagonal
    (Rademacher probes)."""
    rng = check_random_state(random_state)
    Z = rng.choice([-1.0, 1.0], size=(p, HUTCHINSON_PROBES))
    return np.mean(Z * matmat(Z), axis=1)
