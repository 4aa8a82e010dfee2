"""Kronecker statistics and Gauss-Newton blocks of torch networks.

Layer inputs are recorded by forward hooks on a private copy of the module,
and pseudo-gradients are back-propagated from the module output (see
``_kronecker.py`` for the Fisher types).  These functions back the
:class:`~skinfluence.models.KroneckerStatistics` and
:class:`~skinfluence.models.GGNDiagonal` methods of
:class:`~skinfluence.models.TorchAdapter`; they read its internals (the
module copy, the fitted parameters, the training tensors, the loss on the
module output), which is why they live with the family.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.utils import check_random_state
from torch.func import grad, jacrev, vmap

from ..utils._chunks import chunk_size, chunks
from ..utils._progress import progress
from ._kronecker import (
    KroneckerLayer,
    _wb_index,
    check_fisher,
    ggn_blocks_from_statistics,
    ggn_diagonal_from_statistics,
)

if TYPE_CHECKING:
    from ._torch import TorchAdapter


#: Modules K-FAC factors: a weight ``(n_out, ...)`` applied as ``W abar`` to
#: each row (``nn.Linear`` on ``(batch, features)``) or at several positions
#: per row (``nn.Conv2d``'s patches, ``nn.Linear`` on ``(batch, ..., features)``).
_FACTORED = (torch.nn.Linear, torch.nn.Conv2d)


def _layer_shape(label: str, mod: torch.nn.Module) -> tuple[int, int]:
    """``(n_out, d_in)`` of the weight seen as a matrix (no bias column)."""
    if isinstance(mod, torch.nn.Conv2d):
        if mod.groups != 1:
            raise ValueError(
                f"Layer {label!r} is a grouped convolution (groups={mod.groups}); "
                "K-FAC and EK-FAC support nn.Conv2d with groups=1. Use "
                "curvature='blockggn', 'ggn' or 'cg' for this network."
            )
        return mod.out_channels, mod.weight[0].numel()
    n_out, d_in = mod.weight.shape
    return n_out, d_in


def torch_kronecker_layers(adapter: TorchAdapter) -> list[KroneckerLayer]:
    """The network's ``nn.Linear`` and ``nn.Conv2d`` layers, with index maps.

    A convolution's weight ``(out, in, kh, kw)`` is the matrix
    ``(out, in kh kw)`` applied to every unfolded input patch (the ordering of
    ``torch.nn.functional.unfold``), with the bias as the last column.

    Raises
    ------
    TypeError
        When a module with trainable parameters is neither.
    ValueError
        When a layer's weight is frozen or shared with another layer, or a
        convolution is grouped.
    """
    offset = _torch_offsets(adapter)
    layers, unsupported, covered = [], [], set()
    for mname, mod in adapter._module.named_modules():
        prefix = f"{mname}." if mname else ""
        # trainable as the adapter recorded it (a forward through a reused
        # module leaves plain tensors behind in torch.func)
        own = [
            k for k, _ in mod.named_parameters(recurse=False) if prefix + k in offset
        ]
        if not own:
            continue
        label = mname or "<root>"
        if not isinstance(mod, _FACTORED):
            unsupported.append(f"{label!r} ({type(mod).__name__})")
            continue
        w, b = prefix + "weight", prefix + "bias"
        if w not in offset:
            raise ValueError(
                f"Layer {label!r}: K-FAC needs a trainable weight owned by this layer "
                "(frozen or tied weights are not supported)."
            )
        has_bias = b in offset
        n_out, d_in = _layer_shape(label, mod)
        index = _wb_index(offset[w], offset[b] if has_bias else None, n_out, d_in)
        layers.append(KroneckerLayer(mname, n_out, d_in + has_bias, has_bias, index))
        covered.update([w, b] if has_bias else [w])
    if unsupported:
        raise TypeError(
            "K-FAC and EK-FAC support networks whose parameters all belong to "
            "torch.nn.Linear or torch.nn.Conv2d layers (parameter-free modules such "
            "as activations, pooling and flattening are fine); these modules have "
            f"other parameters: {', '.join(unsupported)}. Use curvature='blockggn', "
            "'ggn' or 'cg' for this network, or freeze those parameters "
            "(requires_grad=False)."
        )
    missing = [k for k in adapter._names if k not in covered]
    if missing:
        raise ValueError(
            f"Parameters {missing} are not the weight or bias of an nn.Linear or "
            "nn.Conv2d layer (tied or registered outside a layer); K-FAC cannot "
            "factor them."
        )
    return layers


def torch_parameter_blocks(
    adapter: TorchAdapter, by: str = "layer"
) -> list[tuple[str, NDArray]]:
    """Blocks of flat parameter indices: per module (``"layer"``) or tensor."""
    offset = _torch_offsets(adapter)
    groups: dict[str, list[NDArray]] = {}
    for name, size in zip(adapter._names, adapter._sizes, strict=True):
        key = name if by == "tensor" else name.rpartition(".")[0]
        groups.setdefault(key, []).append(offset[name] + np.arange(size))
    return [(k or "<root>", np.concatenate(v)) for k, v in groups.items()]


def _torch_offsets(adapter: TorchAdapter) -> dict[str, int]:
    starts = np.concatenate([[0], np.cumsum(adapter._sizes)[:-1]])
    return {k: int(s) for k, s in zip(adapter._names, starts, strict=True)}


def _torch_vectors(
    adapter: TorchAdapter, z: Any, y: Any, fisher: str, n_samples: int, gen: Any
) -> Any:
    """Output-space vectors ``U`` of shape (m, b, *z.shape[1:]) for a batch."""
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


def _conv_padding(mod: torch.nn.Conv2d) -> tuple[int, int, int, int]:
    """``torch.nn.functional.pad``'s ``(left, right, top, bottom)`` of a conv."""
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            return (0, 0, 0, 0)
        pads = []  # "same": torch's split, the extra pixel on the right/bottom
        for d, k in zip(reversed(mod.dilation), reversed(mod.kernel_size), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    ph, pw = mod.padding
    return (pw, pw, ph, ph)


def _conv_patches(mod: torch.nn.Conv2d, x: Any) -> Any:
    """The unfolded input patches of a convolution, ``(b, T, in kh kw)``."""
    pad = _conv_padding(mod)
    if any(pad):
        mode = "constant" if mod.padding_mode == "zeros" else mod.padding_mode
        x = torch.nn.functional.pad(x, pad, mode=mode)
    cols = torch.nn.functional.unfold(
        x, mod.kernel_size, dilation=mod.dilation, stride=mod.stride
    )
    return cols.transpose(1, 2).contiguous()


class _LayerRecorder:
    """Forward hooks that keep each layer's input and add a zero probe to its
    output, the leaf that pseudo-gradients are taken with respect to.

    ``store[name]`` is ``(a, probe)``: ``a`` of shape ``(b, d_in)`` for an
    ``nn.Linear`` on ``(batch, features)``, or ``(b, T, d_in)`` for a layer
    whose weight is shared over ``T`` positions per row (the patches of an
    ``nn.Conv2d``, the leading positions of an ``nn.Linear`` on
    ``(batch, ..., features)``).
    """

    def __init__(self, adapter: TorchAdapter, layers: list[KroneckerLayer]) -> None:
        modules = dict(adapter._module.named_modules())
        self.names = [layer.name for layer in layers]
        self.modules = {name: modules[name] for name in self.names}
        self.store: dict[str, tuple[Any, Any]] = {}
        self.handles = [
            modules[name].register_forward_hook(self._hook(name)) for name in self.names
        ]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if name in self.store:
                raise ValueError(
                    f"Layer {name!r} runs more than once per forward pass (a reused "
                    "module); K-FAC needs each layer applied once per sample."
                )
            a = inputs[0]
            if isinstance(module, torch.nn.Conv2d):
                if a.dim() != 4:
                    raise ValueError(
                        f"Layer {name!r} received inputs of shape {tuple(a.shape)}; "
                        "K-FAC supports nn.Conv2d on batched (batch, channels, "
                        "height, width) inputs."
                    )
                a = _conv_patches(module, a)
            elif a.dim() > 2:  # a Linear shared over positions
                a = a.reshape(len(a), -1, a.shape[-1])
            elif a.dim() != 2:
                raise ValueError(
                    f"Layer {name!r} received inputs of shape {tuple(a.shape)}; "
                    "K-FAC supports nn.Linear on (batch, ..., features) inputs."
                )
            # d loss / d probe = d loss / d output, and earlier layers' paths
            # to the loss stay intact
            probe = torch.zeros_like(output, requires_grad=True)
            self.store[name] = (a.detach(), probe)
            return output + probe

        return hook

    def pseudo_gradients(self, name: str, ds: Any) -> Any:
        """``J_s^T U`` of shape (m, b, *out) as (b, m, n_out) or (b, m, T, n_out)."""
        m, b = ds.shape[:2]
        if isinstance(self.modules[name], torch.nn.Conv2d):  # (m, b, out, H, W)
            ds = ds.reshape(m, b, ds.shape[2], -1).transpose(2, 3)
        elif ds.dim() > 3:  # (m, b, ..., out)
            ds = ds.reshape(m, b, -1, ds.shape[-1])
        return ds.transpose(0, 1).contiguous()

    def positions(self) -> list[int]:
        """Positions per row of each recorded layer (1 when not shared)."""
        return [
            self.store[n][0].shape[1] if self.store[n][0].dim() == 3 else 1
            for n in self.names
        ]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _backward(z: Any, leaves: list, U: Any) -> list:
    """``J_s^T U`` for every layer output ``s``: a list of (m, b, n_out)."""
    try:
        return list(
            torch.autograd.grad(z, leaves, grad_outputs=U, is_grads_batched=True)
        )
    except RuntimeError:  # an op without a batching rule: one pass per vector
        outs = [
            torch.autograd.grad(z, leaves, grad_outputs=u, retain_graph=True) for u in U
        ]
        return [torch.stack(g) for g in zip(*outs, strict=True)]


def _stats(
    adapter: TorchAdapter,
    layers: list[KroneckerLayer],
    fisher: str,
    n_samples: int,
    rng: Any,
    verbose: int,
) -> Iterator[list[tuple[NDArray, NDArray]]]:
    gen = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
    recorder = _LayerRecorder(adapter, layers)
    try:
        with torch.no_grad():  # one row: the positions of shared layers
            z = adapter._outputs(adapter._theta, adapter._X[:1])
        positions = recorder.positions()
        m = {"mc": n_samples, "empirical": 1}.get(fisher, z[0].numel())
        width = sum(
            t * (layer.n_in + m * layer.n_out)
            for t, layer in zip(positions, layers, strict=True)
        )
        rows = min(adapter._chunk, chunk_size(width))
        blocks = list(chunks(adapter.n_train, rows))
        for t in progress(blocks, desc="Kronecker factors", verbose=verbose):
            recorder.store.clear()
            with torch.enable_grad():
                z = adapter._outputs(adapter._theta, adapter._X[t])
                U = _torch_vectors(
                    adapter, z.detach(), adapter._y[t], fisher, n_samples, gen
                )
                # row weights, as the linear family: w_i on the empirical
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
                    a = np.concatenate([a, np.ones((*a.shape[:-1], 1))], axis=-1)
                ds = recorder.pseudo_gradients(layer.name, ds)
                out.append((a, adapter._np(ds)))
            yield out
    finally:
        recorder.remove()


def torch_layer_statistics(
    adapter: TorchAdapter,
    layers: list[KroneckerLayer],
    *,
    fisher: str = "mc",
    n_samples: int = 1,
    random_state: Any = None,
    verbose: int = 0,
) -> Iterator[list[tuple[NDArray, NDArray]]]:
    """Stream ``[(abar, ds)]`` per layer and row batch (see ``layer_statistics``)."""
    check_fisher(fisher)
    rng = check_random_state(random_state)
    return _stats(adapter, layers, fisher, n_samples, rng, verbose)


def _gauss_newton_factors(
    adapter: TorchAdapter, verbose: int, desc: str
) -> Iterator[NDArray]:
    """Per row chunk, ``Phi`` of shape (b K, p) stacking ``R_i^T J_i``: the
    output Jacobians times the square root of the output-space loss Hessian,
    so that ``G = (1/n) sum_chunks Phi^T Phi + diag(penalty)``."""

    def out_flat(theta, x):
        return adapter._outputs(theta, x[None])[0].reshape(-1)

    with torch.no_grad():
        K = out_flat(adapter._theta, adapter._X[0]).numel()
    rows = max(1, adapter._chunk // (2 * K))
    jac = vmap(jacrev(out_flat), in_dims=(None, 0))
    for t in progress(list(chunks(adapter.n_train, rows)), desc=desc, verbose=verbose):
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
        R = R * sw[:, None, None]  # row weights
        J = adapter._flat(jac(adapter._theta, X))  # (b, K, p)
        yield adapter._np(torch.einsum("bkj,bkp->bjp", R, J)).reshape(-1, J.shape[-1])


def _jacobian_ggn_blocks(
    adapter: TorchAdapter, blocks: list[NDArray], verbose: int
) -> list[NDArray]:
    """``(1/n) sum_i (R_i^T J_i)^T (R_i^T J_i)`` restricted to each block."""
    G = [np.zeros((len(b), len(b))) for b in blocks]
    for Phi in _gauss_newton_factors(adapter, verbose, "GGN blocks"):
        for Gb, idx in zip(G, blocks, strict=True):
            Gb += Phi[:, idx].T @ Phi[:, idx]
    for Gb, idx in zip(G, blocks, strict=True):
        Gb /= adapter.n_train
        Gb[np.diag_indices_from(Gb)] += adapter.penalty[idx]
    return G


def torch_ggn_blocks(
    adapter: TorchAdapter, blocks: list[NDArray], *, verbose: int = 0
) -> list[NDArray]:
    """Dense diagonal blocks ``G[idx, idx]`` of the Gauss-Newton matrix of ``J``.

    Networks made of ``nn.Linear`` layers: from type-2 Kronecker statistics
    (per-sample factor products, streamed); others: from per-sample output
    Jacobians and the square root of the output-space loss Hessian, ``K``
    Jacobian rows per sample, in row chunks.  The penalty is included.
    """
    try:
        return ggn_blocks_from_statistics(adapter, blocks, verbose)
    except (TypeError, ValueError):  # not every block inside one nn.Linear
        return _jacobian_ggn_blocks(adapter, blocks, verbose)


def torch_ggn_diagonal(adapter: TorchAdapter, *, verbose: int = 0) -> NDArray:
    """Exact ``diag(G)``, plus the penalty.

    Networks made of ``nn.Linear`` layers: from type-2 Kronecker statistics
    (one batched backward pass per row chunk); others: column sums of squares
    of ``R_i^T J_i``, ``K`` Jacobian rows per sample, in row chunks.
    """
    try:
        return ggn_diagonal_from_statistics(adapter, verbose)
    except (TypeError, ValueError):  # not every parameter in one nn.Linear
        pass
    d = np.zeros(adapter.n_params)
    for Phi in _gauss_newton_factors(adapter, verbose, "GGN diagonal"):
        d += np.einsum("ij,ij->j", Phi, Phi)
    return d / adapter.n_train + adapter.penalty
