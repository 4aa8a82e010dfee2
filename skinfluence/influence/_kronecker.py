"""Scores from layer statistics, without per-sample gradients.

For a layer without weight sharing (``nn.Linear`` on ``(batch, features)``),
training row ``i``'s gradient is the outer product ``G_i = ds_i abar_i^T`` of
the pseudo-gradient at the layer output and the layer input (the empirical
Fisher's statistics, weights included).  So:

* a pairwise score is ``sum_l ds_i^T M_l abar_i`` with ``M_l`` the
  preconditioned query gradient of layer ``l``: one matrix product of the
  stacked ``M_l`` with the inputs of a row block, no ``(n, p)`` gradient
  matrix (whose per-sample construction dominated the generic path);
* for K-FAC/EK-FAC, whose inverse is diagonal in the basis ``Q_S (x) Q_A``,
  self-influence is ``sum_l (ds_i Q_S)^2 diag(1 / (Lambda_l + lam))
  (abar_i Q_A)^2``: ``O(n_in^2 + n_out^2 + n_in n_out)`` per row and layer
  instead of a solve (``O(n_in n_out (n_in + n_out))``).

Both fall back (return ``None``) when the adapter cannot give such
statistics for every parameter, so callers keep the generic path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..curvature import EKFACCurvature, KFACCurvature
from ..models import KroneckerStatistics

#: Eigenvalues of ``C + damping`` at or below this fraction of the layer's
#: largest have inverse 0, as in the Kronecker backends' own solve.
_RCOND = 1e-12


class _NotOuterProducts(Exception):
    """A layer's statistics are not one outer product per row."""


def outer_product_layers(adapter: Any) -> list | None:
    """The adapter's Kronecker layers when they cover every parameter once."""
    if not isinstance(adapter, KroneckerStatistics):
        return None
    try:
        layers = adapter.kronecker_layers()
    except (TypeError, ValueError):
        return None
    if not layers:
        return None
    index = np.concatenate([np.asarray(ly.index).ravel() for ly in layers])
    p = adapter.n_params
    if len(index) != p or not np.array_equal(np.sort(index), np.arange(p)):
        return None
    return layers


def _rows(adapter: Any, layers: list) -> Iterator[list[tuple[NDArray, NDArray]]]:
    """Per row block, ``[(abar, ds)]`` per layer with ``ds`` of shape (b, n_out):
    the weighted per-row gradient of the layer is ``ds[i] abar[i]^T``."""
    for batch in adapter.layer_statistics(layers, fisher="empirical"):
        out = []
        for ly, (a, ds) in zip(layers, batch, strict=True):
            ds = np.asarray(ds)
            if ds.ndim == 3 and ds.shape[1] == 1:
                ds = ds[:, 0, :]
            if a.ndim != 2 or ds.ndim != 2 or a.shape[1] != ly.n_in:
                raise _NotOuterProducts
            out.append((a, ds))
        yield out


def kronecker_pairwise(adapter: Any, layers: list, Qinv: NDArray) -> NDArray | None:
    """``S[j, i] = g_i^T Qinv[:, j]`` for every training row, shape (m, n).

    ``Qinv`` (p, m): preconditioned query gradients.  ``None`` when the
    statistics are not outer products (checked on the first row block,
    before any work).
    """
    m = Qinv.shape[1]
    M = [Qinv[ly.index].T.reshape(m * ly.n_out, ly.n_in) for ly in layers]
    S = np.empty((m, adapter.n_train))
    start = 0
    try:
        for batch in _rows(adapter, layers):
            b = len(batch[0][0])
            acc = np.zeros((m, b))
            for ly, Ml, (a, ds) in zip(layers, M, batch, strict=True):
                T = (Ml @ a.T).reshape(m, ly.n_out, b)
                acc += np.einsum("mob,bo->mb", T, ds, optimize=True)
            S[:, start : start + b] = acc
            start += b
    except _NotOuterProducts:
        return None
    return S


def kronecker_self_influence(adapter: Any, backend: Any) -> NDArray | None:
    """``g_i^T (C + lam)^{-1} g_i`` in K-FAC/EK-FAC's eigenbasis, shape (n,).

    ``None`` unless ``backend`` is a fitted :class:`KFACCurvature` (exact
    damping) or :class:`EKFACCurvature` whose layers are outer products.
    """
    if type(backend) not in (KFACCurvature, EKFACCurvature):
        return None
    if getattr(backend, "damping_mode", "exact") != "exact":
        return None
    factors = backend.factors_
    layers = [f.layer for f in factors]
    if outer_product_layers(adapter) is None:
        return None
    inverses = []
    for f, lam in zip(factors, backend.layer_damping_, strict=True):
        denom = f.eigenvalues + f.projected_penalty() + float(lam)
        keep = denom > _RCOND * float(np.max(np.abs(denom), initial=0.0))
        inverses.append(np.where(keep, 1.0 / np.where(keep, denom, 1.0), 0.0))
    out = np.empty(adapter.n_train)
    start = 0
    try:
        for batch in _rows(adapter, layers):
            b = len(batch[0][0])
            acc = np.zeros(b)
            for f, inv, (a, ds) in zip(factors, inverses, batch, strict=True):
                ps = (ds @ f.Q_S) ** 2  # (b, n_out)
                pa = (a @ f.Q_A) ** 2  # (b, n_in)
                acc += np.einsum("bo,bo->b", ps @ inv, pa)
            out[start : start + b] = acc
            start += b
    except _NotOuterProducts:
        return None
    return out
