"""Adapter for torch networks: ``nn.Module`` + loss, differentiated by ``torch.func``.

Everything the influence layer asks for is computed functionally at the
fitted parameters, on a private copy of the module in eval mode (the user's
module is never mutated):

* per-sample gradients: ``vmap(grad(loss_i))`` in chunks of rows;
* Hessian-vector products: forward-over-reverse ``jvp(grad(J))``, vmapped
  over the columns of a block;
* Gauss-Newton products: ``J^T H_out J v`` via ``jvp`` of the module
  outputs, the output-space Hessian of the loss, and ``vjp``.  The split is
  at the module's output: logits for ``CrossEntropyLoss`` (the Fisher).  A
  module that outputs probabilities for ``NLLLoss`` (skorch's default) makes
  ``H_out`` rank one at the label, so its Gauss-Newton matrix is the
  empirical Fisher; prefer logits with ``CrossEntropyLoss`` there;
* the dense Hessian for ``"exact"``: Hessian-vector products on identity
  column chunks.

The objective is ``J(theta) = (1/n) sum_i w_i loss_i + (1/2) sum_k penalty_k
theta_k^2`` with per-row weights ``w_i`` (``sample_weight``, ones by default;
``n`` is the number of rows, not the weight sum, as for
:class:`~skinfluence.models.LinearAdapter`) and the penalty per parameter
(weight decay read from the optimiser, or the estimator's L2).  Every
training-side quantity is weighted: ``train_grads`` returns ``w_i grad
loss_i``, and the objective gradient, Hessian and Gauss-Newton products, PBRF
responses and minibatch gradients all carry ``w_i``.  Query-side gradients
(``loss_grads``, ``prediction_grads``) are unweighted.
"""

from __future__ import annotations

import copy
import functools
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.sparse.linalg import LinearOperator
from torch.func import functional_call, grad, jvp, vjp, vmap

from ..utils._chunks import chunk_size, chunks
from ..utils._linalg import dense_from_matmat
from ..utils._progress import progress
from ._base import encode_labels

#: Columns of a Hessian block handled by one vmapped forward-over-reverse pass.
_HVP_COLUMNS = 32

#: torch's forward-mode AD keeps its dual level in a process-wide global
#: (``torch.autograd.forward_ad``), so two threads inside ``jvp`` at once
#: corrupt each other's tangents.  Every forward-mode computation here
#: (Hessian and Gauss-Newton products, input gradients, output Hessians) holds
#: this lock; reverse-mode work (gradients, Kronecker statistics) runs
#: concurrently on per-thread module copies.
_FORWARD_AD = threading.RLock()


class TorchAdapter:
    """Influence ingredients of a trained torch network.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network (copied; the original is not touched).
    loss : callable
        ``loss(outputs, targets) -> scalar`` on a batch, mean-reduced, e.g.
        ``torch.nn.CrossEntropyLoss()``.  It is applied to one row at a time,
        so its batch-of-one value is the per-sample loss.
    X : array-like of shape (n_train, ...)
        The training inputs the network was trained on (after ``preprocess``).
    y : array-like of shape (n_train,) or (n_train, n_outputs)
        The training targets.
    kind : {"multiclass", "binary", "regression"}
        ``"multiclass"``: outputs ``(n, K)`` and integer class targets;
        ``"binary"``: one logit per row and 0/1 targets; ``"regression"``:
        real targets shaped like the outputs.
    classes : ndarray or None
        Class labels for classifiers (targets are encoded as their index).
    penalty : float or dict, default=0.0
        L2 strength on the mean-loss scale, for all parameters or per
        parameter name.
    output_transform : callable or None, default=None
        Applied to the module output before the loss (e.g. skorch's
        ``log(p + eps)`` for ``NLLLoss`` on probabilities).
    dtype : {"float64", "float32"} or torch.dtype, default=torch.float64
        Computation dtype of the network's products (float64 is the accurate
        default; float32 halves memory and time, at about 1e-6 relative
        error per product before the solve amplifies it by the condition
        number).  Results are returned as float64 numpy arrays either way.
    device : str or torch.device, default="cpu"
        Where the network, the training data and every product live
        (``"cuda"``, ``"cuda:1"``, a ``torch.device``); results come back to
        the CPU as numpy arrays.  An unavailable device is refused.
    refit : callable or None, default=None
        ``refit(keep, warm_start) -> TorchAdapter``: the retrain hook.
    preprocess : transformer or None, default=None
        Fixed preprocessing applied to query inputs (the ``Pipeline`` steps
        before the network).
    batch_size : int or None, default=None
        Rows per chunk of per-sample work.
    sample_weight : array-like of shape (n_train,) or None, default=None
        Per-row weights ``w_i`` of the training losses in the objective
        ``J = (1/n) sum_i w_i loss_i + penalty``; ``None`` means ones.  The
        ``refit`` hook is responsible for retraining with the kept weights.
    verbose : int, default=0
        Progress bars on per-sample work when positive.
    train_indices : array-like of int of shape (n_train,) or None, default=None
        The rows of the estimator's fit ``X`` that ``X`` holds (a skorch
        ``train_split`` trains on part of them); ``None``: all, in order.
    checkpoints : sequence of (parameters, float), default=()
        Parameters saved during training and the learning rate of the epoch
        (TracIn), oldest first; parameters as a dict by parameter name (the
        module's ``named_parameters``) or a flat vector.

    Attributes
    ----------
    n_params, n_train : int
    is_classifier : bool
    is_convex : bool
        ``False``: ``curvature="auto"`` uses the Gauss-Newton matrix.
    classes : ndarray or None
    penalty : ndarray of shape (n_params,)
    weights : ndarray of shape (n_train,)
        The per-row weights ``w_i`` (ones without ``sample_weight``).
    sample_weight : ndarray of shape (n_train,) or None
        The weights as given.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        loss: Callable,
        X: ArrayLike,
        y: ArrayLike,
        *,
        kind: str,
        classes: NDArray | None = None,
        penalty: float | dict = 0.0,
        output_transform: Callable | None = None,
        dtype: torch.dtype | str = torch.float64,
        device: torch.device | str = "cpu",
        refit: Callable | None = None,
        batch_size: int | None = None,
        preprocess: Any = None,
        sample_weight: ArrayLike | None = None,
        verbose: int = 0,
        train_indices: ArrayLike | None = None,
        checkpoints: Sequence[tuple[Any, float]] = (),
    ) -> None:
        if kind not in ("multiclass", "binary", "regression"):
            raise ValueError(
                f"kind must be multiclass, binary or regression; got {kind!r}"
            )
        self.kind = kind
        self.is_classifier = kind != "regression"
        self.classes = classes
        self.dtype = _resolve_dtype(dtype)
        self.device = _resolve_device(device)
        dtype = self.dtype
        self.verbose = verbose
        self._refit = refit
        self.preprocess = preprocess
        # the pristine copy; every thread calls its own copy of it (_module)
        self._template = (
            copy.deepcopy(_unwrap_compiled(module))
            .to(device=self.device, dtype=dtype)
            .eval()
        )
        self._local = threading.local()
        _warn_train_mode_layers(self._template)
        self._loss = loss
        self._out = output_transform or _identity
        named = [
            (k, p) for k, p in self._template.named_parameters() if p.requires_grad
        ]
        if not named:
            raise ValueError("The module has no trainable parameters.")
        self._names = [k for k, _ in named]
        self._shapes = [p.shape for _, p in named]
        self._sizes = [p.numel() for _, p in named]
        self._theta = {k: p.detach().clone() for k, p in named}
        self._buffers = {k: b.detach() for k, b in self._template.named_buffers()}
        self.n_params = int(sum(self._sizes))
        self.penalty = self._penalty_vector(penalty)
        self._pen_t = torch.as_tensor(self.penalty, dtype=dtype, device=self.device)
        self.null_basis = np.zeros((self.n_params, 0))
        self._X = self._tensor(X)
        self._y = self._targets(y)
        self.n_train = len(self._X)
        if len(self._y) != self.n_train:
            raise ValueError(
                f"X and y have different lengths: {self.n_train} and {len(self._y)}."
            )
        self._set_weights(sample_weight)
        self._check_finite_parameters()
        self._check_targets_and_outputs()
        self._chunk = chunk_size(self.n_params, batch_size)
        self.train_indices = self._train_indices(train_indices)
        #: ``[(theta_k, lr_k), ...]``: parameters saved during training (TracIn).
        self.checkpoints = [(self._checkpoint(t), float(lr)) for t, lr in checkpoints]

    # -- conversions ----------------------------------------------------------

    def _set_weights(self, sample_weight: ArrayLike | None) -> None:
        n = self.n_train
        if sample_weight is None:
            self.sample_weight = None
            self.weights = np.ones(n)
        else:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if len(w) != n:
                raise ValueError(
                    f"sample_weight has {len(w)} entries for {n} training rows."
                )
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(
                    "sample_weight must be finite and non-negative; drop rows "
                    "instead of giving them negative weight."
                )
            self.sample_weight = w
            self.weights = w.copy()
        self._w = torch.as_tensor(self.weights, dtype=self.dtype, device=self.device)

    def _penalty_vector(self, penalty: float | dict) -> NDArray:
        if isinstance(penalty, dict):
            parts = [
                np.full(s, float(penalty.get(k, 0.0)))
                for k, s in zip(self._names, self._sizes, strict=True)
            ]
            return np.concatenate(parts)
        return np.full(self.n_params, float(penalty))

    def _inputs(self, X: ArrayLike) -> torch.Tensor:
        """Query inputs: fixed preprocessing, then a tensor."""
        if self.preprocess is not None:
            X = self.preprocess.transform(X)
        return self._tensor(X)

    def _tensor(self, X: ArrayLike) -> torch.Tensor:
        if sparse.issparse(X):
            X = X.toarray()
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise ValueError(f"X must be numeric; got dtype {X.dtype}.")
        if not np.all(np.isfinite(X)):
            raise ValueError("Input X contains NaN or infinity.")
        return torch.as_tensor(X, dtype=self.dtype, device=self.device)

    def _targets(self, y: ArrayLike) -> torch.Tensor:
        y = np.asarray(y)
        if self.is_classifier:
            if self.classes is not None:
                y = encode_labels(self.classes, y)
            elif y.ndim != 1:
                raise ValueError(
                    f"y must be 1-dimensional for a classifier; got {y.shape}."
                )
            if self.kind == "binary":
                return torch.as_tensor(y, dtype=self.dtype, device=self.device)
            return torch.as_tensor(y, dtype=torch.long, device=self.device)
        if not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        ref = getattr(self, "_y", None)  # query targets shaped like training ones
        if ref is not None and y.ndim < ref.dim() and y.size == len(y) * ref[0].numel():
            y = y.reshape(len(y), *ref.shape[1:])
        return torch.as_tensor(y, dtype=self.dtype, device=self.device)

    def _flat(self, tree: dict) -> torch.Tensor:
        first = tree[self._names[0]]
        lead = first.shape[: first.dim() - len(self._shapes[0])]
        return torch.cat([tree[k].reshape(*lead, -1) for k in self._names], dim=-1)

    def _tree(self, flat: torch.Tensor) -> dict:
        parts = torch.split(flat, self._sizes, dim=-1)
        lead = flat.shape[:-1]
        return {
            k: p.reshape(*lead, *s)
            for k, p, s in zip(self._names, parts, self._shapes, strict=True)
        }

    def _device_tensor(self, a: ArrayLike) -> torch.Tensor:
        """A float array as a tensor of the computation dtype, on the device."""
        return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def _np(self, t: torch.Tensor) -> NDArray:
        return t.detach().cpu().numpy().astype(np.float64, copy=False)

    # -- validation --------------------------------------------------------------

    def _check_finite_parameters(self) -> None:
        """Refuse NaN/inf parameters or buffers, naming the tensors."""
        tensors = {**self._theta, **self._buffers}
        bad = [
            f"{k} ({int((~torch.isfinite(t)).sum())} of {t.numel()} values)"
            for k, t in tensors.items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ]
        if bad:
            raise ValueError(
                "The network has NaN or infinite values in " + ", ".join(bad) + ": "
                "training diverged (lower the learning rate, clip gradients or "
                "standardise the inputs) or the parameters were loaded wrongly. "
                "Influence needs finite parameters."
            )

    def _check_targets_and_outputs(self) -> None:
        """Refuse single-class targets and outputs that do not fit the targets:
        such a loss would broadcast or index past the logits silently."""
        if self.is_classifier:
            present = np.unique(self._np(self._y)) if self.n_train else []
            known = len(self.classes) if self.classes is not None else len(present)
            if known < 2 or len(present) < 2:
                raise ValueError(
                    f"The training targets hold a single class "
                    f"({self.classes if self.classes is not None else present!r}): "
                    "influence on a classifier needs at least 2 classes among the "
                    "rows trained on. Check the labels (and a skorch train_split)."
                )
        if not self.n_train:
            return
        with torch.no_grad():
            z = self._template(self._X[:1])  # the module as given, one row
        width = int(np.prod(z.shape[1:], dtype=int))
        if self.kind == "multiclass" and self.classes is not None:
            K = len(self.classes)
            if z.dim() != 2 or z.shape[1] != K:
                raise ValueError(
                    f"The module outputs shape {tuple(z.shape[1:])} per row, but y "
                    f"has {K} classes: a classifier's module must output one value "
                    f"per class, (n_samples, {K}). Build the last layer with {K} "
                    "outputs."
                )
        elif self.kind == "binary" and width != 1:
            raise ValueError(
                f"The module outputs {width} values per row; a binary classifier's "
                "module must output one logit per row, (n_samples,) or "
                "(n_samples, 1)."
            )
        elif self.kind == "regression":
            per_row = int(np.prod(self._y.shape[1:], dtype=int))
            if width != per_row:
                raise ValueError(
                    f"The module outputs {width} values per row but y has "
                    f"{per_row} target(s) per row: the loss would broadcast. Build "
                    f"the last layer with {per_row} output(s)."
                )

    # -- threads and pickling ---------------------------------------------------

    @property
    def _module(self) -> torch.nn.Module:
        """This thread's copy of the network.

        ``functional_call`` swaps the parameters into the module's attributes
        for the duration of a call, so one module object called from two
        threads at once would mix their tensors.  Each thread therefore gets
        its own deep copy of the pristine ``_template`` (never called, so
        copying it is safe while other threads run); forward hooks registered
        on ``_module`` (Kronecker statistics) live on the calling thread's
        copy, the one ``_outputs`` runs.
        """
        module = getattr(self._local, "module", None)
        if module is None:
            module = self._local.module = copy.deepcopy(self._template)
        return module

    def __copy__(self) -> TorchAdapter:
        # copies (with_params, with_data, response) share the per-thread
        # modules: they differ in theta and data, never in the module
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_local", None)  # per-thread copies are rebuilt on demand
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # -- the network as functions of theta --------------------------------------

    def _outputs(self, theta: dict, X: torch.Tensor) -> torch.Tensor:
        """The module's output (the Gauss-Newton split point)."""
        z = functional_call(self._module, {**theta, **self._buffers}, (X,))
        if self.kind == "binary":
            z = z.reshape(len(X))
        return z

    def _loss_one(self, theta: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss_on_output(self._outputs(theta, x[None])[0], y)

    def _loss_on_output(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(self._out(z[None]), y[None])

    def _data_loss(
        self, theta: dict, X: torch.Tensor, y: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        """Weighted sum of per-sample losses over the rows, ``sum_i w_i loss_i``."""
        return (vmap(self._loss_one, in_dims=(None, 0, 0))(theta, X, y) * w).sum()

    # -- the ModelAdapter interface ---------------------------------------------

    def params(self) -> NDArray:
        """The flat parameter vector (``named_parameters`` order)."""
        return self._np(self._flat(self._theta))

    def loss(self, X: ArrayLike, y: ArrayLike) -> NDArray:
        """Per-sample loss of shape (m,)."""
        Xt, yt = self._inputs(X), self._targets(y)
        return self._row_losses(Xt, yt)

    def _row_losses(self, Xt: torch.Tensor, yt: torch.Tensor) -> NDArray:
        """Per-sample losses, ``batch_size`` rows at a time."""
        f = vmap(self._loss_one, in_dims=(None, 0, 0))
        out = np.empty(len(Xt))
        with torch.no_grad():
            for t in chunks(len(Xt), self._chunk):
                out[t] = self._np(f(self._theta, Xt[t], yt[t]))
        return out

    def _forward(self, Xt: torch.Tensor) -> torch.Tensor:
        """Module outputs without gradients, ``batch_size`` rows at a time."""
        with torch.no_grad():
            parts = [
                self._outputs(self._theta, Xt[t]) for t in chunks(len(Xt), self._chunk)
            ]
            return torch.cat(parts) if parts else self._outputs(self._theta, Xt)

    def _predicted_targets(self, Xt: torch.Tensor) -> torch.Tensor:
        z = self._forward(Xt)
        if self.kind == "binary":
            # the output is a logit (BCEWithLogits) by construction
            return (z > 0).to(self.dtype)
        return torch.argmax(z, dim=-1)  # logits or probabilities: same argmax

    def prediction(self, X: ArrayLike) -> NDArray:
        """``y_hat`` (regression, one output) or ``log p(predicted class)``."""
        Xt = self._inputs(X)
        if not self.is_classifier:
            z = self._forward(Xt).reshape(len(Xt), -1)
            self._check_single_output(z)
            return self._np(z[:, 0])
        return -self._row_losses(Xt, self._predicted_targets(Xt))

    def _grads(
        self,
        Xt: torch.Tensor,
        yt: torch.Tensor,
        sign: float = 1.0,
        w: NDArray | None = None,
    ) -> NDArray:
        out = np.empty((len(Xt), self.n_params))
        g = vmap(grad(self._loss_one), in_dims=(None, 0, 0))
        blocks = list(chunks(len(Xt), self._chunk))
        for t in progress(blocks, desc="per-sample gradients", verbose=self.verbose):
            out[t] = self._np(self._flat(g(self._theta, Xt[t], yt[t])))
        if sign != 1.0:
            out *= sign  # in place: no second (m, p) temporary
        if w is not None:
            out *= w[:, None]
        return out

    def loss_grads(self, X: ArrayLike, y: ArrayLike) -> NDArray:
        """Per-sample loss gradients of shape (m, n_params)."""
        return self._grads(self._inputs(X), self._targets(y))

    def prediction_grads(self, X: ArrayLike) -> NDArray:
        """Gradients of :meth:`prediction`, shape (m, n_params)."""
        return self._prediction_grads(self._inputs(X))

    def _prediction_grads(self, Xt: torch.Tensor) -> NDArray:
        if self.is_classifier:
            return self._grads(Xt, self._predicted_targets(Xt), sign=-1.0)

        def pred(theta, x):
            return self._outputs(theta, x[None]).reshape(-1)[0]

        with torch.no_grad():
            self._check_single_output(self._outputs(self._theta, Xt[:1]).reshape(1, -1))
        out = np.empty((len(Xt), self.n_params))
        g = vmap(grad(pred), in_dims=(None, 0))
        for t in chunks(len(Xt), self._chunk):
            out[t] = self._np(self._flat(g(self._theta, Xt[t])))
        return out

    def train_grads(
        self, rows: Any = slice(None), *, total: bool = False, labels: Any = None
    ) -> NDArray:
        """Weighted training gradients ``w_i grad loss_i`` of shape (b, n_params).

        ``labels`` (class indices) relabels the rows first: the gradient a
        label change would give (the row keeps its weight).  ``total=True``
        adds the penalty gradient ``penalty * theta`` to each row.
        """
        idx = np.arange(self.n_train)[rows]
        yt = self._y[idx]
        if labels is not None:
            if not self.is_classifier:
                raise ValueError("Relabelling needs a classifier.")
            yt = torch.as_tensor(
                np.full(len(idx), labels), dtype=self._y.dtype, device=self.device
            )
        G = self._grads(self._X[idx], yt, w=self.weights[idx])
        if total:
            G += self.penalty * self.params()
        return G

    def train_prediction_grads(self, rows: Any = slice(None)) -> NDArray:
        """:meth:`prediction_grads` at training rows, shape (b, n_params)."""
        return self._prediction_grads(self._X[np.arange(self.n_train)[rows]])

    def input_grad_products(self, Q: NDArray, rows: Any = slice(None)) -> NDArray:
        """``d/dx_i <q_j, g_i>`` for query vectors ``Q`` (m, n_params).

        Shape ``(m, b, *input_shape)``: the mixed derivative ``grad_x grad_theta
        loss`` projected on each ``q_j``, by ``grad`` over the input of a
        ``jvp`` along ``q_j``, times the row's weight ``w_i`` (``g_i`` is the
        weighted training gradient).
        """
        if self.preprocess is not None:
            raise ValueError(
                "Input perturbation is taken with respect to the network's own "
                "inputs; fit on preprocessed features instead of a Pipeline."
            )
        idx = np.arange(self.n_train)[rows]
        Qt = self._tree(self._device_tensor(Q))

        def directional(x, y, q):
            return jvp(lambda th: self._loss_one(th, x, y), (self._theta,), (q,))[1]

        per_row = vmap(grad(directional), in_dims=(0, 0, None))
        per_query = vmap(per_row, in_dims=(None, None, 0))
        with _FORWARD_AD:
            parts = [
                self._np(per_query(self._X[idx[t]], self._y[idx[t]], Qt))
                for t in chunks(len(idx), self._chunk)
            ]
        out = (
            np.concatenate(parts, axis=1)
            if parts
            else np.zeros((len(Q), 0, *self._X.shape[1:]))
        )
        w = self.weights[idx].reshape((1, len(idx)) + (1,) * (out.ndim - 2))
        return out * w

    def objective_grad(self) -> NDArray:
        """Gradient of ``J`` at the trained parameters."""
        g = np.zeros(self.n_params)
        gl = grad(self._data_loss)
        for t in chunks(self.n_train, self._chunk):
            g += self._np(
                self._flat(gl(self._theta, self._X[t], self._y[t], self._w[t]))
            )
        return g / self.n_train + self.penalty * self.params()

    def _block_product(self, V: NDArray, rows: Any, column_fn: Callable) -> NDArray:
        V = np.asarray(V, dtype=np.float64)
        squeeze = V.ndim == 1
        V2 = V.reshape(self.n_params, -1)
        idx = np.arange(self.n_train) if rows is None else np.arange(self.n_train)[rows]
        out = np.zeros_like(V2)
        Vt = self._device_tensor(V2.T.copy())  # (m, p)
        for c in chunks(V2.shape[1], _HVP_COLUMNS):
            tangents = self._tree(Vt[c])
            acc = torch.zeros_like(Vt[c])  # (columns, p), summed over row chunks
            for t in chunks(len(idx), self._chunk):
                Xb, yb, wb = self._X[idx[t]], self._y[idx[t]], self._w[idx[t]]
                with _FORWARD_AD:
                    part = vmap(
                        lambda v, Xb=Xb, yb=yb, wb=wb: column_fn(v, Xb, yb, wb)
                    )(tangents)
                acc += self._flat(part)
            out[:, c] = self._np(acc).T / len(idx)
        out += self.penalty[:, None] * V2
        return out[:, 0] if squeeze else out

    def _hvp_column(
        self, v: dict, X: torch.Tensor, y: torch.Tensor, w: torch.Tensor
    ) -> dict:
        g = grad(self._data_loss)
        return jvp(lambda th: g(th, X, y, w), (self._theta,), (v,))[1]

    def _ggn_column(
        self, v: dict, X: torch.Tensor, y: torch.Tensor, w: torch.Tensor
    ) -> dict:
        z, Jv = jvp(lambda th: self._outputs(th, X), (self._theta,), (v,))
        gz = grad(self._loss_on_output)

        # output-space Hessian times Jv, reverse-over-reverse (forward mode
        # through some losses, e.g. MSELoss, trips over immutable ZeroTensors)
        def h_out(zi, yi, ui):
            return grad(lambda w: (gz(w, yi) * ui).sum())(zi)

        HJv = vmap(h_out)(z, y, Jv)
        HJv = HJv * w.reshape((len(w),) + (1,) * (HJv.dim() - 1))
        _, pullback = vjp(lambda th: self._outputs(th, X), self._theta)
        return pullback(HJv)[0]

    def hessian_matvec(self, V: NDArray, rows: Any = None) -> NDArray:
        """``H V`` (``rows``: the minibatch Hessian over those training rows)."""
        return self._block_product(V, rows, self._hvp_column)

    def ggn_matvec(self, V: NDArray, rows: Any = None) -> NDArray:
        """``G V`` with ``G = (1/n) sum_i w_i J_i^T H_out,i J_i + L2``."""
        return self._block_product(V, rows, self._ggn_column)

    def _operator(self, fn: Callable) -> LinearOperator:
        p = self.n_params
        return LinearOperator(
            (p, p), matvec=fn, matmat=fn, rmatvec=fn, dtype=np.float64
        )

    def hessian_operator(self) -> LinearOperator:
        """The Hessian of ``J`` as a ``scipy`` ``LinearOperator``."""
        return self._operator(self.hessian_matvec)

    def ggn_operator(self) -> LinearOperator:
        """The Gauss-Newton matrix of ``J`` as a ``scipy`` ``LinearOperator``."""
        return self._operator(self.ggn_matvec)

    def hessian_matrix(self) -> NDArray:
        """Dense Hessian, assembled from Hessian-vector products in chunks."""
        return self._dense(self.hessian_matvec)

    def ggn_matrix(self) -> NDArray:
        """Dense Gauss-Newton matrix, assembled in chunks."""
        return self._dense(self.ggn_matvec)

    def row_curvature(self, rows: Any = slice(None)) -> tuple[NDArray, NDArray]:
        """Each row's Gauss-Newton block as ``J_i^T M_i J_i``.

        Parameters
        ----------
        rows : slice or array of int, default=slice(None)
            Training rows.

        Returns
        -------
        J : ndarray of shape (b, n_outputs, n_params)
            Per-row Jacobians of the module output (``jacrev``, vmapped).
        M : ndarray of shape (b, n_outputs, n_outputs)
            ``w_i`` times the Hessian of the loss in the module output.
        """
        idx = np.arange(self.n_train)[rows]

        def out(theta, x):
            return self._outputs(theta, x[None]).reshape(-1)

        def out_hessian(z, y):
            return torch.func.hessian(self._loss_on_output)(z, y).reshape(
                z.numel(), z.numel()
            )

        Js, Ms = [], []
        jac = vmap(torch.func.jacrev(out), in_dims=(None, 0))
        for t in chunks(len(idx), max(1, self._chunk // 4)):
            Xb, yb = self._X[idx[t]], self._y[idx[t]]
            tree = jac(self._theta, Xb)  # name -> (b, K, *shape)
            J = torch.cat(
                [tree[k].reshape(len(Xb), tree[k].shape[1], -1) for k in self._names],
                dim=2,
            )
            with torch.no_grad():
                z = self._outputs(self._theta, Xb)
            with _FORWARD_AD:
                M = vmap(out_hessian)(z, yb) * self._w[idx[t]].reshape(-1, 1, 1)
            Js.append(self._np(J))
            Ms.append(self._np(M))
        return np.concatenate(Js), np.concatenate(Ms)

    def parameter_names(self, feature_names: Any = None) -> list[str]:
        """``<tensor name>[<flat index>]`` per parameter (``named_parameters``)."""
        return [
            f"{name}[{j}]"
            for name, size in zip(self._names, self._sizes, strict=True)
            for j in range(size)
        ]

    def _dense(self, fn: Callable) -> NDArray:
        return dense_from_matmat(fn, self.n_params, verbose=self.verbose)

    def response(
        self,
        remove: int | None,
        *,
        damping: float,
        kind: str = "pbrf",
        epsilon: float = 1.0,
        max_iter: int = 5000,
        tol: float = 1e-9,
    ) -> TorchAdapter:
        """The network minimising a response objective around the trained one.

        The objectives of :meth:`LinearAdapter.response` (``"pbrf"``: weighted
        Bregman divergence of the module outputs to the trained ones, minus
        ``epsilon`` times the removed point's weighted loss, plus the
        proximity term with weight decay; ``"proximal"``: the training
        objective minus ``epsilon`` times the point's loss, plus ``(damping/2)
        ||theta - theta_s||^2``), minimised by full-batch L-BFGS (strong
        Wolfe) from the trained parameters.

        The problem is solved in rescaled coordinates ``theta = theta_s +
        sigma u`` with the objective scaled so that its gradient at ``u = 0``
        has unit norm and its curvature along that gradient is one: the
        removal term is ``1/n`` of the loss, so in raw units the steps and
        curvature pairs are so small that torch's L-BFGS drops its updates
        (``y^T s <= 1e-10``) and stalls.  Restarted until the gradient falls
        below ``tol`` times its initial norm or stops improving.

        Parameters
        ----------
        remove : int or None
            The training row removed (``None``: nothing removed).
        damping : float
            The proximity strength.
        kind : {"pbrf", "proximal"}, default="pbrf"
        epsilon : float, default=1.0
            Fraction of the row's weight removed (``1``: the whole row).
        max_iter : int, default=5000
            L-BFGS iterations per restart.
        tol : float, default=1e-9
            Target of the final gradient norm relative to the initial one;
            reported ``converged`` below ``1000 * tol`` (rounding limits the
            attainable gradient near ``1e-9`` relative).

        Returns
        -------
        adapter : TorchAdapter
            The same network at the response parameters, with
            ``response_info``: ``{"grad_norm": relative final gradient norm,
            "n_iter": L-BFGS iterations, "converged": bool, "curvature":
            curvature of the objective at ``theta_s`` along the response
            (Rayleigh quotient; at most ``0`` means the proximity term does not
            hold the removed point's own negative curvature)}``.
        """
        if kind not in ("pbrf", "proximal"):
            raise ValueError(f"kind must be 'pbrf' or 'proximal'; got {kind!r}.")
        n = self.n_train
        theta_s = self._flat(self._theta).detach()
        pen, w = self._pen_t, self._w
        with torch.no_grad():
            zs = self._outputs(self._theta, self._X)
            loss_s = vmap(self._loss_on_output)(zs, self._y)
        rs = vmap(grad(self._loss_on_output))(zs, self._y).detach()
        eps = float(epsilon)

        def objective(flat: torch.Tensor) -> torch.Tensor:
            # constants (the losses at theta_s) are subtracted so the value is
            # the small change it is, not a difference of large sums
            theta = self._tree(flat)
            diff = flat - theta_s
            z = self._outputs(theta, self._X)
            losses = vmap(self._loss_on_output)(z, self._y) - loss_s
            if kind == "pbrf":
                lin = (rs * (z - zs)).reshape(n, -1).sum(dim=1)
                value = (w * (losses - lin)).sum() / n
                value = value + 0.5 * ((pen + damping) * diff**2).sum()
            else:
                value = (w * losses).sum() / n + 0.5 * (pen * flat**2).sum()
                value = value + 0.5 * damping * (diff**2).sum()
            if remove is not None:
                value = value - eps * w[remove] * losses[remove] / n
            return value

        x0 = theta_s.clone().requires_grad_(True)
        g0 = torch.autograd.grad(objective(x0), x0, create_graph=True)[0]
        g0_norm = float(g0.detach().norm())
        new = copy.copy(self)
        if g0_norm == 0.0:  # theta_s is the response (e.g. nothing removed)
            new.response_info = {
                "grad_norm": 0.0,
                "n_iter": 0,
                "converged": True,
                "curvature": float("nan"),
            }
            return new
        # curvature of the objective along its initial gradient: the length
        # scale of the first step (the proximity term when it is not positive)
        u0 = g0.detach() / g0_norm
        kappa = float(torch.autograd.grad(g0, x0, u0, retain_graph=True)[0] @ u0)
        floor = float(damping) + float(pen.min())
        kappa = kappa if kappa > 0 else max(floor, 1e-12)
        sigma = g0_norm / kappa
        scale = 1.0 / (sigma * g0_norm)
        u = torch.zeros_like(theta_s, requires_grad=True)

        def closure():
            opt.zero_grad()
            value = scale * objective(theta_s + sigma * u)
            value.backward()
            return value

        opt = torch.optim.LBFGS(
            [u],
            max_iter=max_iter,
            tolerance_grad=tol,
            tolerance_change=0.0,
            history_size=50,
            line_search_fn="strong_wolfe",
        )
        opt.step(closure)
        n_iter = int(opt.state[u]["n_iter"])
        # L-BFGS's line search compares objective values, whose rounding
        # limits it to a relative gradient of ~1e-4: polish with Newton steps
        # (conjugate gradients on exact Hessian products), which need
        # gradients only.
        v = u.detach().clone()
        gnorm = _newton_polish(
            lambda x: scale * objective(theta_s + sigma * x), v, tol=tol
        )
        u = v
        d = (sigma * u).detach()
        curvature = float("nan")
        if float(d.norm()) > 0:
            dn = d / d.norm()
            curvature = float(torch.autograd.grad(g0, x0, dn)[0] @ dn)
        new._theta = self._tree((theta_s + d).detach())
        new.response_info = {
            "grad_norm": gnorm,
            "n_iter": n_iter,
            "converged": bool(gnorm <= 1000 * tol),
            "curvature": curvature,
        }
        return new

    def with_data(self, X: ArrayLike, y: ArrayLike) -> TorchAdapter:
        """The same network (same parameters) with ``(X, y)`` as its training
        set (inputs before ``preprocess``); the penalty keeps its mean-loss
        scale.  Used to fine-tune on, and take the curvature of, a validation
        set (VM/FVM).  The copy has no retrain hook, no checkpoints and unit
        weights (the training ``sample_weight`` does not carry over)."""
        new = copy.copy(self)
        new._X = self._inputs(X)
        new._y = self._targets(y)
        if len(new._X) != len(new._y):
            raise ValueError(
                f"X and y have different lengths: {len(new._X)} and {len(new._y)}."
            )
        new.n_train = len(new._X)
        new._set_weights(None)
        new._refit = None
        new.checkpoints = []
        new.train_indices = np.arange(new.n_train)
        return new

    def _with_params(self, theta: NDArray) -> TorchAdapter:
        new = copy.copy(self)
        new._theta = self._tree(self._device_tensor(theta))
        return new

    def batch_objective_grad(self, theta: NDArray, rows: Any) -> NDArray:
        """Gradient at ``theta`` of the objective with the (weighted) data term
        averaged over ``rows`` only (a minibatch gradient), shape (n_params,)."""
        idx = np.arange(self.n_train)[rows]
        tree = self._tree(self._device_tensor(theta))
        g = grad(self._data_loss)(tree, self._X[idx], self._y[idx], self._w[idx])
        return self._np(self._flat(g)) / len(idx) + self.penalty * theta

    def param_blocks(self) -> list[tuple[slice, tuple[int, ...]]]:
        """``(slice of the flat vector, shape)`` per parameter tensor."""
        bounds = np.cumsum([0, *self._sizes])
        return [
            (slice(int(a), int(b)), tuple(s))
            for a, b, s in zip(bounds[:-1], bounds[1:], self._shapes, strict=True)
        ]

    def retrain(
        self, keep: NDArray, *, warm_start: bool = True, random_state: Any = None
    ) -> TorchAdapter:
        """Retrain on the kept rows through the estimator's hook.

        ``random_state`` seeds a cold start (initialisation and batch order);
        ``None`` keeps the estimator's own seed.  The hook retrains on the
        kept rows with their kept weights.
        """
        if self._refit is None:
            raise NotImplementedError(
                "This adapter has no retrain hook; build it from a TorchClassifier, "
                "TorchRegressor or skorch net."
            )
        return self._refit(np.asarray(keep), warm_start, random_state)

    def _check_single_output(self, z: torch.Tensor) -> None:
        if z.shape[-1] != 1:
            raise ValueError(
                "target='prediction' needs a scalar output; this network has "
                f"{z.shape[-1]}. Use target='loss'."
            )

    # -- capabilities (skinfluence.models._contract) --------------------------

    #: Influence with the loss gradient is compared with PBRF, not with a
    #: refit at the same weight decay (see ``InfluenceScorer.train_gradient``).
    removal_gradient = "loss"

    #: A network's objective is not convex: its Hessian is indefinite away
    #: from a minimum, so ``curvature="auto"`` picks the Gauss-Newton family.
    is_convex = False

    def _train_indices(self, train_indices: ArrayLike | None) -> NDArray:
        if train_indices is None:
            return np.arange(self.n_train)
        rows = np.asarray(train_indices, dtype=np.intp).reshape(-1)
        if len(rows) != self.n_train:
            raise ValueError(
                f"train_indices has {len(rows)} entries for {self.n_train} rows."
            )
        return rows

    @functools.cached_property
    def n_outputs(self) -> int:
        """Outputs per row of the module (logits or targets), from one row.

        Computed on first use: a forward pass through a module that applies
        one layer twice un-ties its parameters in ``torch.func``.
        """
        with torch.no_grad():
            z = self._outputs(self._theta, self._X[:1])
        return int(np.prod(z.shape[1:], dtype=int))

    def _checkpoint(self, theta: Any) -> NDArray:
        """A saved parameter set as a flat float64 vector."""
        if isinstance(theta, dict):
            tree = {k: torch.as_tensor(theta[k]).to(self.dtype) for k in self._names}
            return self._np(self._flat(tree))
        flat = np.asarray(theta, dtype=np.float64).reshape(-1)
        if len(flat) != self.n_params:
            raise ValueError(
                f"A checkpoint has {len(flat)} parameters; the network has "
                f"{self.n_params}."
            )
        return flat

    def with_params(self, theta: NDArray) -> TorchAdapter:
        """The same network and data at the flat parameters ``theta``."""
        return self._with_params(theta)

    def ggn_diagonal(self) -> NDArray:
        """Exact diagonal of the Gauss-Newton matrix, shape (n_params,).

        From per-sample output Jacobians and the square root of the
        output-space loss Hessian (``n_outputs`` Jacobian rows per sample, in
        row chunks): ``diag(G) = (1/n) sum_i colsum((R_i^T J_i)^2) + penalty``.
        """
        from ._torch_kronecker import torch_ggn_diagonal

        return torch_ggn_diagonal(self, verbose=self.verbose)

    def kronecker_layers(self) -> list:
        """The ``nn.Linear`` layers as ``KroneckerLayer`` (with index maps);
        a ``TypeError`` names modules with other parameters."""
        from ._torch_kronecker import torch_kronecker_layers

        return torch_kronecker_layers(self)

    def layer_statistics(
        self,
        layers: list,
        *,
        fisher: str = "mc",
        n_samples: int = 1,
        random_state: Any = None,
        verbose: int = 0,
    ) -> Any:
        """Stream ``[(abar, ds)]`` per layer and row batch: the layer inputs
        and the pseudo-gradients of the ``fisher`` type."""
        from ._torch_kronecker import torch_layer_statistics

        return torch_layer_statistics(
            self,
            layers,
            fisher=fisher,
            n_samples=n_samples,
            random_state=random_state,
            verbose=verbose,
        )

    def parameter_blocks(self, by: str = "layer") -> list[tuple[str, NDArray]]:
        """Flat index blocks per module (``"layer"``) or parameter tensor."""
        from ._torch_kronecker import torch_parameter_blocks

        return torch_parameter_blocks(self, by)

    def ggn_blocks(self, blocks: list[NDArray], *, verbose: int = 0) -> list[NDArray]:
        """Dense diagonal blocks of the Gauss-Newton matrix, penalty included."""
        from ._torch_kronecker import torch_ggn_blocks

        return torch_ggn_blocks(self, blocks, verbose=verbose)

    def __repr__(self) -> str:
        return f"TorchAdapter({type(self._template).__name__}, kind={self.kind!r})"


_DTYPE_NAMES = {"float64": torch.float64, "float32": torch.float32}


def _resolve_dtype(dtype: Any) -> torch.dtype:
    """``"float64"``/``"float32"`` or the torch dtypes; anything else refused."""
    resolved = _DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if resolved not in (torch.float64, torch.float32):
        raise ValueError(
            f"dtype must be 'float64' or 'float32' (or torch.float64/float32); "
            f"got {dtype!r}."
        )
    return resolved


def _resolve_device(device: Any) -> torch.device:
    """A ``torch.device`` that exists here; a clear error otherwise."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:<index>' or a torch.device; got "
            f"{device!r}."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} asks for a GPU, but CUDA is not available "
                "here (torch.cuda.is_available() is False: no GPU, or a CPU-only "
                "torch build). Use device='cpu'."
            )
        index = resolved.index
        if index is not None and index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: there are only {torch.cuda.device_count()} "
                "CUDA devices."
            )
    elif resolved.type != "cpu":
        backend = getattr(torch.backends, resolved.type, None)
        available = getattr(backend, "is_available", lambda: False)()
        if not available:
            raise ValueError(
                f"device={device!r} is not available here; use device='cpu'."
            )
    return resolved


def _identity(z: torch.Tensor) -> torch.Tensor:
    """No output transform (a module-level function, so adapters pickle)."""
    return z


def _train_mode_layers(module: torch.nn.Module) -> list[str]:
    """Layers that compute differently in training mode: dropout (``p > 0``)
    and normalisation with running statistics (BatchNorm and friends)."""
    found = []
    for name, m in module.named_modules():
        dropout = isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0
        norm = isinstance(m, torch.nn.modules.batchnorm._NormBase) and bool(
            m.track_running_stats
        )
        if dropout or norm:
            found.append(f"{name or 'module'} ({type(m).__name__})")
    return found


def _warn_train_mode_layers(module: torch.nn.Module) -> None:
    layers = _train_mode_layers(module)
    if layers:
        warnings.warn(
            "Influence is computed with the network in eval mode, the function "
            "it predicts with: " + ", ".join(layers) + " behave as at prediction "
            "time (no dropout; batch norm with its running statistics), not as "
            "in training, whose objective was stochastic (dropout) or depended "
            "on the batch (batch norm). Scores refer to the eval-mode objective.",
            UserWarning,
            stacklevel=4,
        )


def _newton_polish(
    fn: Callable, u: torch.Tensor, *, tol: float, steps: int = 20
) -> float:
    """Newton-CG on ``fn`` from ``u`` (updated in place) until the gradient
    norm is below ``tol`` (relative to the unit initial gradient); stops at
    negative curvature or when a step does not reduce the gradient.  Returns
    the final gradient norm."""

    def gradient(x: torch.Tensor, graph: bool = False) -> tuple:
        x = x.detach().requires_grad_(True)
        g = torch.autograd.grad(fn(x), x, create_graph=graph)[0]
        return x, g

    x, g = gradient(u, graph=True)
    gnorm = float(g.detach().norm())
    for _ in range(steps):
        if gnorm <= tol:
            break
        # CG on H p = -g with Hessian products by double backward
        p = torch.zeros_like(u)
        r = -g.detach()
        d = r.clone()
        rr = float(r @ r)
        for _ in range(10 * len(u)):
            Hd = torch.autograd.grad(g, x, d, retain_graph=True)[0]
            dHd = float((d @ Hd).detach())
            if dHd <= 0:
                break  # negative curvature: keep the step found so far
            alpha = rr / dHd
            p = p + alpha * d
            r = r - alpha * Hd
            rr_new = float(r @ r)
            if rr_new**0.5 <= 0.1 * tol * max(gnorm, tol):
                break
            d = r + (rr_new / rr) * d
            rr = rr_new
        for step in (1.0, 0.5, 0.25, 0.125, 0.0625):  # backtrack on ||grad||
            x_new, g_new = gradient(u + step * p, graph=True)
            if float(g_new.detach().norm()) < gnorm:
                break
        else:
            break
        u.copy_(u + step * p)
        x, g, gnorm = x_new, g_new, float(g_new.detach().norm())
    return gnorm


def _unwrap_compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` wraps modules; differentiate the original."""
    return getattr(module, "_orig_mod", module)


def reset_parameters(module: torch.nn.Module) -> None:
    """Re-initialise every layer that can (``reset_parameters``), in place."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
