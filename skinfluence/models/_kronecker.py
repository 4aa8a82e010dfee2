"""Per-layer statistics for Kronecker-factored curvature (K-FAC, EK-FAC).

For a linear layer ``s = W a + b`` the per-sample gradient of a loss is the
outer product ``DW = ds abar^T`` of the pseudo-gradient ``ds = dloss/ds`` and
the homogeneous input ``abar = [a, 1]`` (the 1 only with a trainable bias),
so its Gauss-Newton block is ``E[(ds ds^T) (x) (abar abar^T)]``; K-FAC
approximates it by ``S (x) A`` with ``S = E[ds ds^T]`` and
``A = E[abar abar^T]``.  This module reads a model adapter and yields, row
batch by row batch, the pairs ``(abar, ds)`` for every layer, so that factor
accumulation is streamed with bounded memory.

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

The torch path reads :class:`TorchAdapter` internals (the module copy, the
fitted parameters, the training tensors, the loss on the module output);
torch is imported only there, so the linear path never needs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, softmax
from sklearn.utils import check_random_state

from ..utils._chunks import chunk_size, chunks
from ..utils._progress import progress
from ._linear import LinearAdapter, _BinomialLoss, _MultinomialLoss

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


def _is_torch_adapter(adapter: Any) -> bool:
    return hasattr(adapter, "_module") and hasattr(adapter, "_theta")


def _torch_offsets(adapter: Any) -> dict[str, int]:
    starts = np.concatenate([[0], np.cumsum(adapter._sizes)[:-1]])
    return {k: int(s) for k, s in zip(adapter._names, starts, strict=True)}


def _wb_index(w0: int, b0: int | None, n_out: int, d_in: int) -> NDArray:
    """Flat positions of ``[W b].ravel()`` given where ``W`` and ``b`` start."""
    idx = w0 + np.arange(n_out * d_in).reshape(n_out, d_in)
    if b0 is not None:
        idx = np.hstack([idx, b0 + np.arange(n_out)[:, None]])
    return idx.ravel()


def kronecker_layers(adapter: Any) -> list[KroneckerLayer]:
    """The adapter's layers, with their index maps.

    Raises
    ------
    TypeError
        When a module with trainable parameters is not an ``nn.Linear``, or
        the adapter is neither a torch nor a scikit-learn linear adapter.
    ValueError
        When a layer's weight is frozen or shared with another layer.
    """
    if isinstance(adapter, LinearAdapter):
        K, dt = adapter.n_outputs, adapter._dt
        index = np.arange(K * dt)
        return [KroneckerLayer("linear", K, dt, adapter.fit_intercept, index)]
    if not _is_torch_adapter(adapter):
        raise TypeError(
            f"Kronecker-factored curvature needs a torch network or a scikit-learn "
            f"linear model; got an adapter of type {type(adapter).__name__}. Use "
            "curvature='ggn' or 'cg' instead."
        )
    import torch

    offset = _torch_offsets(adapter)
    layers, unsupported, covered = [], [], set()
    for mname, mod in adapter._module.named_modules():
        own = [k for k, p in mod.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        label = mname or "<root>"
        if not isinstance(mod, torch.nn.Linear):
            unsupported.append(f"{label!r} ({type(mod).__name__})")
            continue
        prefix = f"{mname}." if mname else ""
        w, b = prefix + "weight", prefix + "bias"
        if w not in offset:
            raise ValueError(
                f"Layer {label!r}: K-FAC needs a trainable weight owned by this layer "
                "(frozen or tied weights are not supported)."
            )
        has_bias = b in offset
        n_out, d_in = mod.weight.shape
        index = _wb_index(offset[w], offset[b] if has_bias else None, n_out, d_in)
        layers.append(KroneckerLayer(mname, n_out, d_in + has_bias, has_bias, index))
        covered.update([w, b] if has_bias else [w])
    if unsupported:
        raise TypeError(
            "K-FAC and EK-FAC support networks whose parameters all belong to "
            "torch.nn.Linear layers (parameter-free modules such as activations "
            f"are fine); these modules have other parameters: {', '.join(unsupported)}."
            " Use curvature='blockggn', 'ggn' or 'cg' for this network, or freeze "
            "those parameters (requires_grad=False)."
        )
    missing = [k for k in adapter._names if k not in covered]
    if missing:
        raise ValueError(
            f"Parameters {missing} are not the weight or bias of an nn.Linear layer "
            "(tied or registered outside a layer); K-FAC cannot factor them."
        )
    return layers


def parameter_blocks(adapter: Any, by: str = "layer") -> list[tuple[str, NDArray]]:
    """Blocks of flat parameter indices: per layer (module) or per tensor.

    Returns
    -------
    blocks : list of (name, ndarray of int)
        Disjoint, covering every parameter, in the adapter's order.
    """
    if isinstance(adapter, LinearAdapter):
        if by == "layer" or not adapter.fit_intercept:
            return [("linear", np.arange(adapter.n_params))]
        K, dt = adapter.n_outputs, adapter._dt
        grid = np.arange(K * dt).reshape(K, dt)
        return [("coef", grid[:, :-1].ravel()), ("intercept", grid[:, -1].copy())]
    if not _is_torch_adapter(adapter):
        raise TypeError(
            "Block-diagonal curvature needs a torch network or a scikit-learn linear "
            f"model; got an adapter of type {type(adapter).__name__}."
        )
    offset = _torch_offsets(adapter)
    groups: dict[str, list[NDArray]] = {}
    for name, size in zip(adapter._names, adapter._sizes, strict=True):
        key = name if by == "tensor" else name.rpartition(".")[0]
        groups.setdefault(key, []).append(offset[name] + np.arange(size))
    return [(k or "<root>", np.concatenate(v)) for k, v in groups.items()]


# ---------------------------------------------------------------------------
# Streaming (abar, ds) pairs
# ---------------------------------------------------------------------------


def _sym_sqrt_np(H: NDArray) -> NDArray:
    """Symmetric square roots of a stack of PSD matrices (b, K, K)."""
    w, Q = np.linalg.eigh(H)
    return (Q * np.sqrt(np.clip(w, 0.0, None))[:, None, :]) @ np.swapaxes(Q, 1, 2)


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
        R = _sym_sqrt_np(loss.hess_entries(Z) * w[:, None, None])
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
    return rng.standard_normal((n_samples,) + Z.shape) * sw


def _linear_stats(
    adapter: LinearAdapter, fisher: str, n_samples: int, rng: Any, verbose: int
) -> Iterator[list[tuple[NDArray, NDArray]]]:
    blocks = list(chunks(adapter.n_train, chunk_size(adapter.n_params)))
    for t in progress(blocks, desc="Kronecker factors", verbose=verbose):
        U = _linear_vectors(adapter, t, fisher, n_samples, rng)
        yield [(adapter._Xt[t], np.swapaxes(U, 0, 1))]


def _torch_vectors(
    adapter: Any, z: Any, y: Any, fisher: str, n_samples: int, gen: Any
) -> Any:
    """Output-space vectors ``U`` of shape (m, b, *z.shape[1:]) for a batch."""
    import torch
    from torch.func import grad, jacrev, vmap

    b, zshape = len(z), z.shape[1:]
    K = int(np.prod(zshape, dtype=int))
    zf = z.reshape(b, K)

    def loss_flat(zi, yi):
        return adapter._loss_on_output(zi.reshape(zshape), yi)

    def sqrt_hessian():
        H = vmap(jacrev(grad(loss_flat)))(zf, y)
        w, Q = torch.linalg.eigh(0.5 * (H + H.transpose(1, 2)))
        return (Q * w.clamp(min=0).sqrt()[:, None, :]) @ Q.transpose(1, 2)

    gz = vmap(grad(loss_flat))
    if fisher == "empirical":
        U = gz(zf, y)[None]
    elif fisher == "type2":
        U = sqrt_hessian().permute(2, 0, 1)
    elif adapter.kind == "multiclass":
        probs = torch.softmax(adapter._out(z).reshape(b, K), dim=-1)
        yhat = torch.multinomial(probs, n_samples, replacement=True, generator=gen)
        U = torch.stack([gz(zf, yhat[:, k]) for k in range(n_samples)])
    elif adapter.kind == "binary":
        p = torch.sigmoid(zf[:, 0]).expand(n_samples, b)
        yhat = torch.bernoulli(p, generator=gen).to(z.dtype)
        U = torch.stack([gz(zf, yhat[k]) for k in range(n_samples)])
    else:
        eps = torch.randn((n_samples, b, K), generator=gen, dtype=z.dtype)
        U = torch.einsum("bij,mbj->mbi", sqrt_hessian(), eps)
    if fisher == "mc":
        U = U / math.sqrt(n_samples)
    return U.reshape(len(U), b, *zshape)


class _LayerRecorder:
    """Forward hooks that keep each layer's input and add a zero probe to its
    output, the leaf that pseudo-gradients are taken with respect to."""

    def __init__(self, adapter: Any, layers: list[KroneckerLayer]) -> None:
        modules = dict(adapter._module.named_modules())
        self.names = [layer.name for layer in layers]
        self.store: dict[str, tuple[Any, Any]] = {}
        self.handles = [
            modules[name].register_forward_hook(self._hook(name)) for name in self.names
        ]

    def _hook(self, name: str):
        import torch

        def hook(module, inputs, output):
            if name in self.store:
                raise ValueError(
                    f"Layer {name!r} runs more than once per forward pass (a reused "
                    "module); K-FAC needs each nn.Linear applied once per sample."
                )
            a = inputs[0]
            if a.dim() != 2:
                raise ValueError(
                    f"Layer {name!r} received inputs of shape {tuple(a.shape)}; "
                    "K-FAC supports nn.Linear layers applied to (batch, features) "
                    "inputs only."
                )
            # d loss / d probe = d loss / d output, and earlier layers' paths
            # to the loss stay intact
            probe = torch.zeros_like(output, requires_grad=True)
            self.store[name] = (a.detach(), probe)
            return output + probe

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _backward(z: Any, leaves: list, U: Any) -> list:
    """``J_s^T U`` for every layer output ``s``: a list of (m, b, n_out)."""
    import torch

    try:
        return list(
            torch.autograd.grad(z, leaves, grad_outputs=U, is_grads_batched=True)
        )
    except RuntimeError:  # an op without a batching rule: one pass per vector
        outs = [
            torch.autograd.grad(z, leaves, grad_outputs=u, retain_graph=True) for u in U
        ]
        return [torch.stack(g) for g in zip(*outs, strict=True)]


def _torch_stats(
    adapter: Any,
    layers: list[KroneckerLayer],
    fisher: str,
    n_samples: int,
    rng: Any,
    verbose: int,
) -> Iterator[list[tuple[NDArray, NDArray]]]:
    import torch

    gen = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
    m = {"mc": n_samples, "empirical": 1}.get(fisher, layers[-1].n_out)
    width = sum(layer.n_in + m * layer.n_out for layer in layers)
    rows = min(adapter._chunk, chunk_size(width))
    blocks = list(chunks(adapter.n_train, rows))
    recorder = _LayerRecorder(adapter, layers)
    try:
        for t in progress(blocks, desc="Kronecker factors", verbose=verbose):
            recorder.store.clear()
            with torch.enable_grad():
                z = adapter._outputs(adapter._theta, adapter._X[t])
                U = _torch_vectors(
                    adapter, z.detach(), adapter._y[t], fisher, n_samples, gen
                )
                # sample weights, as _linear_vectors: w_i on the empirical
                # gradient, sqrt(w_i) on Gauss-Newton factors
                w = torch.as_tensor(adapter.weights[t], dtype=U.dtype)
                w = w if fisher == "empirical" else w.sqrt()
                U = U * w.reshape(1, -1, *([1] * (U.dim() - 2)))
                leaves = [recorder.store[name][1] for name in recorder.names]
                DS = _backward(z, leaves, U)
            out = []
            for layer, ds in zip(layers, DS, strict=True):
                a = adapter._np(recorder.store[layer.name][0])
                if layer.has_bias:
                    a = np.hstack([a, np.ones((len(a), 1))])
                out.append((a, np.swapaxes(adapter._np(ds), 0, 1)))
            yield out
    finally:
        recorder.remove()


def layer_statistics(
    adapter: Any,
    layers: list[KroneckerLayer],
    *,
    fisher: str = "mc",
    n_samples: int = 1,
    random_state: Any = None,
    verbose: int = 0,
) -> Iterator[list[tuple[NDArray, NDArray]]]:
    """Stream, row batch by row batch, ``(abar, ds)`` for every layer.

    Parameters
    ----------
    adapter : TorchAdapter or LinearAdapter
    layers : list of KroneckerLayer
        From :func:`kronecker_layers`.
    fisher : {"mc", "empirical", "type2"}, default="mc"
    n_samples : int, default=1
        Sampled labels per row for ``"mc"``.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0

    Yields
    ------
    batch : list of (abar, ds), one per layer
        ``abar`` of shape (b, n_in) and ``ds`` of shape (b, m, n_out), with
        ``m`` vectors per row (``K`` for ``"type2"``, ``n_samples`` for
        ``"mc"``, scaled by ``1/sqrt(n_samples)``, 1 for ``"empirical"``), so
        that ``(1/n) sum_rows sum_m (ds ds^T) (x) (abar abar^T)`` estimates
        the layer's Gauss-Newton block.
    """
    if fisher not in FISHER_TYPES:
        raise ValueError(f"fisher must be one of {FISHER_TYPES}; got {fisher!r}.")
    rng = check_random_state(random_state)
    if isinstance(adapter, LinearAdapter):
        return _linear_stats(adapter, fisher, n_samples, rng, verbose)
    return _torch_stats(adapter, layers, fisher, n_samples, rng, verbose)


# ---------------------------------------------------------------------------
# Exact Gauss-Newton blocks
# ---------------------------------------------------------------------------


def _torch_ggn_blocks(
    adapter: Any, blocks: list[NDArray], verbose: int
) -> list[NDArray]:
    """``(1/n) sum_i (R_i^T J_i)^T (R_i^T J_i)`` restricted to each block."""
    import torch
    from torch.func import grad, jacrev, vmap

    def out_flat(theta, x):
        return adapter._outputs(theta, x[None])[0].reshape(-1)

    with torch.no_grad():
        K = out_flat(adapter._theta, adapter._X[0]).numel()
    rows = max(1, adapter._chunk // (2 * K))
    G = [np.zeros((len(b), len(b))) for b in blocks]
    jac = vmap(jacrev(out_flat), in_dims=(None, 0))
    for t in progress(
        list(chunks(adapter.n_train, rows)), desc="GGN blocks", verbose=verbose
    ):
        X, y = adapter._X[t], adapter._y[t]
        with torch.no_grad():
            z = adapter._outputs(adapter._theta, X)
        zshape = z.shape[1:]

        def loss_flat(zi, yi, zshape=zshape):
            return adapter._loss_on_output(zi.reshape(zshape), yi)

        H = vmap(jacrev(grad(loss_flat)))(z.reshape(len(X), K), y)
        w, Q = torch.linalg.eigh(0.5 * (H + H.transpose(1, 2)))
        R = (Q * w.clamp(min=0).sqrt()[:, None, :]) @ Q.transpose(1, 2)
        sw = torch.as_tensor(adapter.weights[t], dtype=R.dtype).sqrt()
        R = R * sw[:, None, None]  # sample weights
        J = adapter._flat(jac(adapter._theta, X))  # (b, K, p)
        Phi = adapter._np(torch.einsum("bkj,bkp->bjp", R, J)).reshape(-1, J.shape[-1])
        for Gb, idx in zip(G, blocks, strict=True):
            Gb += Phi[:, idx].T @ Phi[:, idx]
    for Gb, idx in zip(G, blocks, strict=True):
        Gb /= adapter.n_train
        Gb[np.diag_indices_from(Gb)] += adapter.penalty[idx]
    return G


def _linear_layer_ggn_blocks(
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
    layers = kronecker_layers(adapter)
    where = np.full((adapter.n_params, 2), -1)
    for num, ly in enumerate(layers):
        where[ly.index] = np.column_stack([np.full(ly.size, num), np.arange(ly.size)])
    owner = []
    for idx in blocks:
        nums = np.unique(where[idx, 0])
        if len(nums) != 1 or nums[0] < 0:
            raise ValueError("A block spans more than one linear layer.")
        owner.append(int(nums[0]))
    G = [np.zeros((ly.n_out**2, ly.n_in**2)) for ly in layers]
    for batch in layer_statistics(adapter, layers, fisher="type2", verbose=verbose):
        for Gl, ly, (a, ds) in zip(G, layers, batch, strict=True):
            for t in chunks(len(a), chunk_size(ly.n_out**2 + ly.n_in**2)):
                S = np.einsum("bko,bkq->boq", ds[t], ds[t]).reshape(len(a[t]), -1)
                A = np.einsum("bi,bj->bij", a[t], a[t]).reshape(len(a[t]), -1)
                Gl += S.T @ A
    full = []
    for ly, Gl in zip(layers, G, strict=True):
        O, I = ly.n_out, ly.n_in  # noqa: E741
        M = Gl.reshape(O, O, I, I).transpose(0, 2, 1, 3).reshape(ly.size, ly.size)
        full.append(M / adapter.n_train)
    out = []
    for idx, num in zip(blocks, owner, strict=True):
        local = where[idx, 1]
        Gb = full[num][np.ix_(local, local)]
        Gb[np.diag_indices_from(Gb)] += adapter.penalty[idx]
        out.append(Gb)
    return out


def ggn_blocks(
    adapter: Any, blocks: list[NDArray], *, verbose: int = 0
) -> list[NDArray]:
    """Dense diagonal blocks ``G[idx, idx]`` of the Gauss-Newton matrix of ``J``.

    The penalty (and, for linear models, the flat-direction projector) is
    included, as in the adapter's ``ggn_matrix``.  Torch networks made of
    ``nn.Linear`` layers: from type-2 Kronecker statistics (per-sample factor
    products, streamed); other torch networks: from per-sample output
    Jacobians and the square root of the output-space loss Hessian, ``K``
    Jacobian rows per sample, in row chunks.  Closed-form
    adapters: their dense matrix.  Others: Gauss-Newton products on the
    identity columns of each block.
    """
    if _is_torch_adapter(adapter):
        try:
            return _linear_layer_ggn_blocks(adapter, blocks, verbose)
        except (TypeError, ValueError):  # not every block inside one nn.Linear
            return _torch_ggn_blocks(adapter, blocks, verbose)
    if hasattr(adapter, "ggn_matrix"):
        G = adapter.ggn_matrix()
        return [G[np.ix_(idx, idx)] for idx in blocks]
    op = adapter.ggn_operator()
    out = []
    for idx in blocks:
        E = np.zeros((adapter.n_params, len(idx)))
        E[idx, np.arange(len(idx))] = 1.0
        Gb = op.matmat(E)[idx]
        out.append(0.5 * (Gb + Gb.T))
    return out
