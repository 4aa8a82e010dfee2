"""Kronecker statistics of the scikit-learn linear family (one layer).

A linear model ``z = W~ x~`` is a single linear layer whose input is the
augmented feature row ``x~`` and whose pseudo-gradient is the output-space
vector ``u`` of the chosen Fisher type, so K-FAC's factors are
``A = E[x~ x~^T]`` and ``S = E[u u^T]``.  These functions back the
:class:`~skinfluence.models.KroneckerStatistics` methods of
:class:`~skinfluence.models.LinearAdapter`; they read its internals, which
is why they live with the family.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, softmax
from sklearn.utils import check_random_state

from ..utils._chunks import chunk_size, chunks
from ..utils._progress import progress
from ._kronecker import KroneckerLayer, _sym_sqrt_np, check_fisher
from ._linear import _BinomialLoss, _MultinomialLoss, _SquaredLoss, dense_rows

if TYPE_CHECKING:
    from ._linear import LinearAdapter


def linear_kronecker_layers(adapter: LinearAdapter) -> list[KroneckerLayer]:
    """The one layer ``[coef_, intercept_]`` of shape (n_outputs, d~)."""
    K, dt = adapter.n_outputs, adapter._dt
    return [KroneckerLayer("linear", K, dt, adapter.fit_intercept, np.arange(K * dt))]


def linear_parameter_blocks(
    adapter: LinearAdapter, by: str = "layer"
) -> list[tuple[str, NDArray]]:
    """One block (``by="layer"``), or coefficients and intercepts (``"tensor"``)."""
    if by == "layer" or not adapter.fit_intercept:
        return [("linear", np.arange(adapter.n_params))]
    K, dt = adapter.n_outputs, adapter._dt
    grid = np.arange(K * dt).reshape(K, dt)
    return [("coef", grid[:, :-1].ravel()), ("intercept", grid[:, -1].copy())]


def linear_ggn_blocks(adapter: LinearAdapter, blocks: list[NDArray]) -> list[NDArray]:
    """Blocks of the closed-form Gauss-Newton matrix (the Hessian here)."""
    G = adapter.ggn_matrix()
    return [G[np.ix_(idx, idx)] for idx in blocks]


def _linear_vectors(
    adapter: LinearAdapter,
    t: slice,
    fisher: str,
    n_samples: int,
    rng: np.random.RandomState,
) -> NDArray:
    """Output-space vectors ``U`` of shape (m, b, K) for rows ``t``."""
    Z, T, w = adapter._Z[t], adapter._T[t], adapter.weights[t]
    loss = adapter._loss
    if fisher == "empirical":
        return (loss.residual(Z, T) * w[:, None])[None]
    if fisher == "type2":
        R = _sym_sqrt_np(loss.hess_entries(Z, T) * w[:, None, None])
        return np.moveaxis(R, 2, 0)
    sw = np.sqrt(w)[None, :, None] / math.sqrt(n_samples)
    if isinstance(loss, _MultinomialLoss):
        P = softmax(Z, axis=1)
        cum = np.cumsum(P, axis=1)
        u = rng.random_sample((n_samples, len(Z), 1))
        yhat = np.minimum((u > cum[None]).sum(axis=2), Z.shape[1] - 1)
        return (P[None] - np.eye(Z.shape[1])[yhat]) * sw
    if isinstance(loss, _BinomialLoss):
        p = expit(Z)
        yhat = rng.random_sample((n_samples,) + Z.shape) < p[None]
        return (p[None] - yhat) * sw
    eps = rng.standard_normal((n_samples,) + Z.shape)
    if isinstance(loss, _SquaredLoss):
        return eps * sw
    # the score of the Gaussian whose precision is the output-space Hessian
    # (a Tweedie deviance's curvature depends on the target)
    R = _sym_sqrt_np(loss.hess_entries(Z, T) * w[:, None, None])
    return np.einsum("bij,mbj->mbi", R, eps) / math.sqrt(n_samples)


def _linear_stats(
    adapter: LinearAdapter, fisher: str, n_samples: int, rng: Any, verbose: int
) -> Iterator[list[tuple[NDArray, NDArray]]]:
    size = chunk_size(adapter.n_params, getattr(adapter, "_batch_size", None))
    blocks = list(chunks(adapter.n_train, size))
    for t in progress(blocks, desc="Kronecker factors", verbose=verbose):
        U = _linear_vectors(adapter, t, fisher, n_samples, rng)
        # sparse features: a dense block of rows (the consumers take arrays;
        # the block is bounded by chunk_size, the factor A is dense anyway)
        yield [(dense_rows(adapter._Xt[t]), np.swapaxes(U, 0, 1))]


def linear_layer_statistics(
    adapter: LinearAdapter,
    *,
    fisher: str = "mc",
    n_samples: int = 1,
    random_state: Any = None,
    verbose: int = 0,
) -> Iterator[list[tuple[NDArray, NDArray]]]:
    """Stream ``[(x~, u)]`` per row batch (see ``layer_statistics``)."""
    check_fisher(fisher)
    rng = check_random_state(random_state)
    return _linear_stats(adapter, fisher, n_samples, rng, verbose)
