"""Per-layer statistics for Kronecker-factored curvature (K-FAC, EK-FAC).

For a linear layer ``s = W a + b`` the per-sample gradient of a loss is the
outer product ``DW = ds abar^T`` of the pseudo-gradient ``ds = dloss/ds`` and
the homogeneous input ``abar = [a, 1]`` (the 1 only with a trainable bias),
so its Gauss-Newton block is ``E[(ds ds^T) (x) (abar abar^T)]``; K-FAC
approximates it by ``S (x) A`` with ``S = E[ds ds^T]`` and
``A = E[abar abar^T]``.  This module reads a model adapter and yields, row
batch by row batch, the pairs ``(abar, ds)`` for every layer, so that factor
accumulation is streamed with bounded memory.

A layer whose weight is shared over ``T`` positions of a row (an
``nn.Conv2d`` over its unfolded input patches, an ``nn.Linear`` over the
leading axes of a ``(batch, ..., features)`` input) has the per-sample
gradient ``DW = sum_t ds_t abar_t^T``; its statistics carry the position
axis, ``abar`` of shape ``(b, T, n_in)`` and ``ds`` of shape
``(b, m, T, n_out)``.  K-FAC then uses the KFC approximation of Grosse &
Martens (2016), in the "expand" normalisation of Eschenhagen et al. (2023):
``A = (1/(n T)) sum_i sum_t abar_it abar_it^T`` and
``S = (1/n) sum_i sum_t ds_it ds_it^T``, so that ``S (x) A`` is the layer's
Gauss-Newton block when derivatives at different positions are uncorrelated
and their statistics do not depend on the position (it is exact, for
instance, for a convolution whose every output is a least-squares target),
and reduces to the plain K-FAC factors when ``T = 1``.

Which ``ds`` (the "Fisher type") is a choice:

* ``"type2"``: back-propagate the ``K`` columns of a symmetric square root of
  the output-space loss Hessian ``H_out = R R^T``; then
  ``sum_k DW_k DW_k^T`` is the sample's exact Gauss-Newton block;
* ``"mc"``: back-propagate ``dloss(z, y_hat)/dz`` for labels sampled from the
  model's predictive distribution (the true Fisher; categorical for
  ``multiclass``, Bernoulli for ``binary``; for regression ``R eps`` with
  ``eps ~ N(0, I)``, the score of the Gaussian likelihood whose precision is
  ``H_out``).  This assumes the loss is that negative log-likelihood
  (``CrossEntropyLoss``/``NLLLoss``, ``BCEWithLogitsLoss``, ``MSELoss``);
* ``"empirical"``: back-propagate the gradient at the true label (the
  empirical Fisher).

Layer order in the adapter's flat vector and the ``[W b]`` layout of the
factors differ for torch modules (``W.ravel()`` then ``b``); every
:class:`KroneckerLayer` carries the index map between the two.

This module holds what is common to every model family; the statistics of
each family live with it (``_linear_kronecker.py``, ``_torch_kronecker.py``)
and are reached through the adapters' :class:`KroneckerStatistics` methods,
so nothing here, nor in ``curvature/``, reads an adapter's internals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..utils._chunks import chunk_size, chunks

FISHER_TYPES = ("mc", "empirical", "type2")


@dataclass(frozen=True)
class KroneckerLayer:
    """One linear layer seen as a ``(n_out, n_in)`` block ``[W b]``.

    Attributes
    ----------
    name : str
        The module's name (``named_modules``), or ``"linear"`` for a
        scikit-learn linear model.
    n_out : int
        Output features (rows of ``W``).
    n_in : int
        Input features plus one when the layer has a trainable bias.
    has_bias : bool
    index : ndarray of shape (n_out * n_in,)
        ``theta[index]`` is ``[W b].ravel()`` (row-major), ``theta`` being the
        adapter's flat parameter vector.
    """

    name: str
    n_out: int
    n_in: int
    has_bias: bool
    index: NDArray

    @property
    def size(self) -> int:
        return self.n_out * self.n_in


def check_fisher(fisher: str) -> None:
    """Refuse an unknown Fisher type with the known ones."""
    if fisher not in FISHER_TYPES:
        raise ValueError(f"fisher must be one of {FISHER_TYPES}; got {fisher!r}.")


def _wb_index(w0: int, b0: int | None, n_out: int, d_in: int) -> NDArray:
    """Flat positions of ``[W b].ravel()`` given where ``W`` and ``b`` start."""
    idx = w0 + np.arange(n_out * d_in).reshape(n_out, d_in)
    if b0 is not None:
        idx = np.hstack([idx, b0 + np.arange(n_out)[:, None]])
    return idx.ravel()


def shared_gradients(a: NDArray, ds: NDArray) -> NDArray:
    """Per-sample gradients ``sum_t ds_t abar_t^T`` of a weight-shared layer.

    ``a`` of shape (b, T, n_in), ``ds`` of shape (b, m, T, n_out); returns
    (b, m, n_out, n_in), row-major like ``[W b]``.
    """
    return np.swapaxes(ds, -1, -2) @ a[:, None]  # batched BLAS products


def _shared_chunks(a: NDArray, ds: NDArray) -> Iterator[NDArray]:
    """:func:`shared_gradients` over row chunks of bounded memory, flattened
    to (rows m, n_out n_in)."""
    b, m, _, n_out = ds.shape
    for t in chunks(b, chunk_size(m * n_out * a.shape[-1])):
        yield shared_gradients(a[t], ds[t]).reshape(-1, n_out * a.shape[-1])


def _sym_sqrt_np(H: NDArray) -> NDArray:
    """Symmetric square roots of a stack of PSD matrices (b, K, K)."""
    w, Q = np.linalg.eigh(H)
    return (Q * np.sqrt(np.clip(w, 0.0, None))[:, None, :]) @ np.swapaxes(Q, 1, 2)


def ggn_blocks_from_statistics(
    adapter: Any, blocks: list[NDArray], verbose: int
) -> list[NDArray]:
    """Blocks inside ``nn.Linear`` layers: ``G_l = (1/n) sum_i S_i (x) A_i``.

    With type-2 pseudo-gradients ``ds_ik`` (``k`` over the columns of the
    output-Hessian square root), the sample's exact block is
    ``S_i (x) abar_i abar_i^T`` with ``S_i = sum_k ds_ik ds_ik^T``; summing
    the flattened factors as ``vec(S_i) vec(A_i)^T`` costs
    ``n n_out^2 n_in^2`` instead of ``n K (n_out n_in)^2``.

    Raises
    ------
    TypeError or ValueError
        When the network is not made of ``nn.Linear`` layers (the caller then
        uses per-sample Jacobians) or a block spans two layers.
    """
    layers = adapter.kronecker_layers()
    where = np.full((adapter.n_params, 2), -1)
    for num, ly in enumerate(layers):
        where[ly.index] = np.column_stack([np.full(ly.size, num), np.arange(ly.size)])
    owner = []
    for idx in blocks:
        nums = np.unique(where[idx, 0])
        if len(nums) != 1 or nums[0] < 0:
            raise ValueError("A block spans more than one linear layer.")
        owner.append(int(nums[0]))
    # per layer: the Kronecker-summed (n_out^2, n_in^2) form for layers
    # applied once per row, the plain (size, size) block for shared layers
    G: list[Any] = [None] * len(layers)
    shared = [False] * len(layers)
    for batch in adapter.layer_statistics(layers, fisher="type2", verbose=verbose):
        for num, (ly, (a, ds)) in enumerate(zip(layers, batch, strict=True)):
            shared[num] = a.ndim == 3  # no per-sample Kronecker form
            if G[num] is None:
                shape = (ly.size, ly.size) if shared[num] else (ly.n_out**2, ly.n_in**2)
                G[num] = np.zeros(shape)
            if shared[num]:
                for D in _shared_chunks(a, ds):
                    G[num] += D.T @ D
                continue
            for t in chunks(len(a), chunk_size(ly.n_out**2 + ly.n_in**2)):
                S = np.einsum("bko,bkq->boq", ds[t], ds[t]).reshape(len(a[t]), -1)
                A = np.einsum("bi,bj->bij", a[t], a[t]).reshape(len(a[t]), -1)
                G[num] += S.T @ A
    full = []
    for ly, Gl, sh in zip(layers, G, shared, strict=True):
        O, I = ly.n_out, ly.n_in  # noqa: E741
        if not sh:
            Gl = Gl.reshape(O, O, I, I).transpose(0, 2, 1, 3)
        full.append(Gl.reshape(ly.size, ly.size) / adapter.n_train)
    out = []
    for idx, num in zip(blocks, owner, strict=True):
        local = where[idx, 1]
        Gb = full[num][np.ix_(local, local)]
        Gb[np.diag_indices_from(Gb)] += adapter.penalty[idx]
        out.append(Gb)
    return out


def ggn_diagonal_from_statistics(adapter: Any, verbose: int = 0) -> NDArray:
    """``diag(G)`` of a model made of linear layers, from type-2 statistics.

    A sample's exact Gauss-Newton block of a layer is ``sum_k (ds_k ds_k^T)
    (x) (abar abar^T)``, whose diagonal is ``sum_k ds_k^2 (x) abar^2``; one
    backward pass with the ``K`` columns of the output-Hessian square root
    gives every layer's.  The penalty is included.

    Raises
    ------
    TypeError or ValueError
        When the model is not made of linear layers applied once per sample
        (the caller then uses per-sample Jacobians).
    """
    layers = adapter.kronecker_layers()
    d = np.zeros(adapter.n_params)
    for batch in adapter.layer_statistics(layers, fisher="type2", verbose=verbose):
        for ly, (a, ds) in zip(layers, batch, strict=True):
            if a.ndim == 3:  # shared weight: the per-sample gradients
                for D in _shared_chunks(a, ds):
                    d[ly.index] += np.einsum("ij,ij->j", D, D)
            else:
                d[ly.index] += (np.sum(ds**2, axis=1).T @ a**2).ravel()
    return d / adapter.n_train + adapter.penalty
