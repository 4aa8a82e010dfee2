r"""Reference influence scores from pyDVL 0.10.0 for a fitted LogisticRegression.

This module is used by the benchmarks to put pyDVL's numbers next to
skinfluence's.  It only depends on pyDVL at call time, so importing it does not
require pyDVL to be installed.

Installation
------------
``pip install "pydvl[influence]==0.10.0"`` must not be used as is: pyDVL 0.10.0
pins ``numpy<2`` and would downgrade numpy.  Its influence code runs fine on
numpy 2, so install the extra's dependencies (keeping numpy/torch fixed with a
constraints file) and then pyDVL itself without dependencies::

    pip install -c constraints.txt "pyDeprecate>=0.3.2" "more-itertools>=9.0.0" \
        "pandas>=1.3" "cvxpy>=1.3.0" psutil "numcodecs<0.16.0" \
        "dask>=2023.5.0" "distributed>=2023.5.0" "zarr>=3,<4"
    pip install --no-deps "pydvl==0.10.0"

Objective
---------
skinfluence works with the penalised mean loss

.. math::

    J(\theta) = \frac{1}{n} \sum_i \ell_i(\theta)
        + \frac{\lambda}{2} \lVert W \rVert^2,

where the intercept ``b`` is *not* penalised (sklearn: ``lambda = 1 / (C n)``).
``ell_i`` is the binary cross-entropy on a single logit (sklearn's binary
model, ``K = 1`` row) or the softmax cross-entropy on ``K >= 3`` logits
(sklearn's symmetric multinomial parametrisation).

pyDVL cannot express this directly:

* Its ``regularization`` argument adds ``regularization * I`` to the whole
  block, intercept included (``DirectSolveOperator._update_diagonal`` in
  ``pydvl/influence/torch/operator.py``, ``CgOperator._reg_operator_apply``).
  A per-block dictionary does not help with ``BlockMode.FULL`` (one block),
  and in 0.10.0 ``_build_regularization_dict``
  (``pydvl/influence/torch/base.py``) even rejects any valid dictionary.
* It uses the *same* ``loss(outputs, targets)`` for the Hessian and for the
  per-sample gradients (``TorchGradientProvider`` in ``torch/base.py``), so
  putting ``(lambda/2)||W||^2`` into the loss would add ``lambda W`` to every
  gradient, and the loss never sees the parameters anyway.

What it does allow is a different *data set* for the Hessian (``fit``) and for
the gradients (``influences``).  The penalty is therefore emitted through the
model outputs by extra "penalty rows" that are only in the data passed to
``fit``:

* the model input is ``[x, keep_bias]`` and the model computes
  ``W x + keep_bias * b`` (an ``nn.Linear`` holding ``coef``/``intercept``);
* data rows are ``[x_i, 1]`` with their label, i.e. ordinary logits;
* penalty row ``j`` is ``[e_j, 0]`` with target ``-1``; its output is the
  column ``W[:, j]`` (no intercept), and the loss adds
  ``(lambda/2) ||W[:, j]||^2`` for it;
* the loss averages the cross-entropy over the data rows only (targets
  ``>= 0``) and *sums* the penalty-row terms.

``fit`` gets a single full batch (data rows plus penalty rows), and
``pydvl.influence.torch.functional.hessian`` / ``HessianOperator`` then
differentiate exactly ``J(theta)`` (one batch: the batch-size weighting of
``hessian`` and the unweighted ``ChunkAveraging`` of ``HessianOperator`` both
reduce to the identity, so Direct, CG, LiSSA and Arnoldi see the same matrix).
``influences`` only ever gets data rows; the per-sample loss there is the plain
cross-entropy ``ell_i``, so the gradients are the unpenalised ones.

Multinomial null direction
--------------------------
For softmax with an intercept, ``J`` is invariant under ``b -> b + c 1_K``,
so its Hessian has the null vector ``v = (0, 1_K)``.  ``torch.linalg.solve``
on that singular matrix would be unreliable.  Instead of a tiny global
regularisation, one more "gauge row" ``[0, 1]`` with target ``-2`` adds
``(mu/2) (sum_k b_k)^2`` to the differentiated objective, i.e. ``mu 1 1^T``
on the intercept block: the Hessian pyDVL inverts is ``H + mu K v v^T/|v|^2``.
Every per-sample gradient ``(p - onehot) (x) [x, 1]`` is orthogonal to ``v``
(and ``v`` is an eigenvector of ``H``), so ``g_q^T (H + c v v^T)^{-1} g_i =
g_q^T H^+ g_i`` *exactly*: the scores equal the pseudo-inverse scores.  The
gauge eigenvalue ``mu K`` is set to ``lambda`` (``1`` if ``lambda == 0``) so
that it sits inside the spectrum.  If ``lambda == 0`` the whole class-sum
subspace ``1_K (x) R^(d+1)`` is null, and the gauge rows are added for every
weight column too (same argument, same exactness).  No ``regularization`` is
passed to pyDVL.

Sign and scale
--------------
In pyDVL 0.10.0 ``influences(x_test, y_test, x, y, mode=InfluenceMode.Up)``
returns ``<H^{-1} grad l(z_test), grad l(z)>`` *without* a minus sign
(``OperatorBilinearForm`` / ``BilinearForm.grads_inner_prod`` in
``pydvl/influence/types.py`` and ``torch/base.py``), with ``H`` the Hessian of
the *mean* objective and per-sample loss gradients.  That is already
skinfluence's ``S[j, i] = g_q_j^T H^{-1} g_i`` (``S / n`` is the predicted
change of the query loss when point ``i`` is removed; the up-weighting effect
is ``-S``), so the conversion is the identity: no sign flip and no rescaling.

Networks (``pydvl_module_scores``)
----------------------------------
For a ``torch.nn.Module`` trained on ``J(theta) = mean CE + (lambda/2)
||theta||^2`` over *all* parameters, pyDVL's ``regularization=lambda`` is
exactly the penalty Hessian, so no penalty rows are needed: the loss passed to
pyDVL is plain ``F.cross_entropy`` (mean), ``fit`` gets one full batch, and the
per-sample gradients are the unpenalised ones.  The same sign convention
applies (identity conversion).  The Hessian of the mean cross-entropy alone is
usually *indefinite* at a minimum of ``J`` (its smallest eigenvalues sit just
above ``-lambda``), so ``H + lambda I`` is positive definite but can be badly
conditioned; the solvers' accuracy depends on that condition number.  pyDVL
only differentiates parameters with ``requires_grad=True``, and
``regularization`` must be a Python ``float`` (an ``int`` is taken for a
per-block dictionary and rejected).

Measured on a 64-16-10 tanh MLP on 300 digits rows (``lambda = 1e-3``,
1210 parameters, eigenvalues of ``H + lambda I`` in ``[9e-5, 0.098]``):
Direct and CG agree with a dense float64 solve to ``1e-13``; LiSSA needs
~20000 full-batch steps for ``1e-9`` (``1e-3`` after 5000); Arnoldi is poor
below full rank (relative error 0.95 at ``rank=10``, 0.83 at 100, 0.18 at 800;
``use_woodbury=True`` gives 0.02 at 800 but 2.9 at 100).  The reason is that
ARPACK keeps the eigenvalues of largest *magnitude* of the mean-CE Hessian,
while the inverse is dominated by the smallest eigenvalues of ``H + lambda I``,
which come from the negative-curvature directions of ``H`` (near
``-lambda``) and are the last ones Arnoldi picks.  Constant input features
(e.g. the always-blank digit pixels) give first-layer weights with identically
zero gradients, so LiSSA's ``0 / 0`` stopping test always runs to ``maxiter``.

Solver quirks of pyDVL 0.10.0 (``pydvl/influence/torch/operator.py``)
----------------------------------------------------------------------
* ``CgOperator`` (one system per query, started at ``x0 = b``) stops when the
  residual norm is below ``max(rtol**2 * |b[0]|, atol**2)``: the norm is taken
  over the wrong axis, so in practice this is an *absolute* threshold
  ``atol**2`` (``1e-12`` by default).  Queries with a tiny gradient therefore
  get a larger relative error.  ``solve_simultaneously=True`` (block CG) uses
  the per-query norm ``max(rtol**2 * ||b||, atol**2)``, but falls back to
  ``maxiter = 10 * (number of queries)``; this wrapper always passes
  ``maxiter = 10 * (number of parameters)`` unless given.
* ``LissaOperator`` stops on ``max |residual / h| < rtol``; a parameter with an
  identically zero gradient (e.g. a constant feature) gives ``0 / 0`` and the
  iteration always runs to ``maxiter`` (the result is still fine).  It needs
  ``scale`` above half the largest eigenvalue; the wrapper estimates it.
* ``ArnoldiInfluence`` keeps the top ``rank`` eigenpairs (``rank < #params``)
  and drops the rest, so it approximates ``H^{-1}`` even at full rank.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["pydvl_module_scores", "pydvl_removal_scores"]

_PENALTY = -1
_GAUGE = -2

# Defaults for the pyDVL constructors; user kwargs override them.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "direct": {},
    "cg": {"rtol": 1e-4, "atol": 1e-6},
    "lissa": {"maxiter": 5000, "rtol": 1e-6, "dampen": 0.0},
    "arnoldi": {"rank": 10, "tol": 1e-6},
}


class _BiasGatedLinear(nn.Module):
    """``nn.Linear`` whose intercept is gated by the last input column.

    Parameters
    ----------
    coef : ndarray of shape (K, d)
        Weight matrix.
    intercept : ndarray of shape (K,) or None
        Intercept, or None for a model without intercept.
    """

    def __init__(self, coef: NDArray[np.float64], intercept: NDArray | None) -> None:
        super().__init__()
        k, d = coef.shape
        self.linear = nn.Linear(d, k, bias=intercept is not None, dtype=torch.float64)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float64))
            if intercept is not None:
                self.linear.bias.copy_(torch.as_tensor(intercept, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Compute ``x W^T + keep_bias * b`` for inputs ``z = [x, keep_bias]``.

        Parameters
        ----------
        z : Tensor of shape (N, d + 1)
            Features with the intercept gate appended as last column.

        Returns
        -------
        Tensor of shape (N, K)
            Logits (data rows) or weight columns (penalty rows).
        """
        out = F.linear(z[:, :-1], self.linear.weight)
        if self.linear.bias is not None:
            out = out + z[:, -1:] * self.linear.bias
        return out


def _make_loss(binary: bool, l2: float, mu: float):
    """Build the loss ``pyDVL`` differentiates (see the module docstring).

    Parameters
    ----------
    binary : bool
        Binary cross-entropy on one logit if True, softmax cross-entropy if not.
    l2 : float
        Penalty strength ``lambda`` on the mean-loss scale.
    mu : float
        Strength of the gauge term ``(mu/2) (sum_k out_k)^2``.

    Returns
    -------
    callable
        ``loss(outputs, targets) -> scalar`` that is the mean cross-entropy
        over data rows (targets >= 0) plus the penalty and gauge row terms.
    """

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        is_data = (targets >= 0).to(outputs.dtype)
        is_pen = (targets == _PENALTY).to(outputs.dtype)
        is_gauge = (targets == _GAUGE).to(outputs.dtype)
        if binary:
            ce = F.binary_cross_entropy_with_logits(
                outputs[:, 0], targets.clamp(min=0).to(outputs.dtype), reduction="none"
            )
        else:
            ce = F.cross_entropy(outputs, targets.clamp(min=0), reduction="none")
        data = (is_data * ce).sum() / is_data.sum().clamp(min=1.0)
        pen = 0.5 * l2 * (is_pen * outputs.pow(2).sum(dim=1)).sum()
        gauge = 0.5 * mu * (is_gauge * outputs.sum(dim=1).pow(2)).sum()
        return data + pen + gauge

    return loss


def _import_pydvl() -> tuple[Any, Any]:
    """Import pyDVL's torch influence API, silencing import-time warnings.

    Returns
    -------
    pit : module
        The ``pydvl.influence.torch`` module.
    mode : enum
        ``pydvl.influence.InfluenceMode``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            import pydvl.influence.torch as pit
            from pydvl.influence import InfluenceMode
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pyDVL 0.10.0 with its influence dependencies is required; see the "
            "docstring of benchmarks/_pydvl_ref.py for the install commands."
        ) from exc
    return pit, InfluenceMode


def _estimate_lambda_max(model: nn.Module, loss: Any, loader: Any) -> float:
    """Largest Hessian eigenvalue by power iteration on pyDVL's HVP operator.

    Parameters
    ----------
    model : nn.Module
        The model.
    loss : callable
        The loss pyDVL differentiates.
    loader : DataLoader
        The fit data.

    Returns
    -------
    float
        Estimate of the largest eigenvalue.
    """
    from pydvl.influence.torch.operator import HessianOperator

    op = HessianOperator(model, loss, loader)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(op.input_size, dtype=torch.float64, generator=gen)
    v /= v.norm()
    lam = 0.0
    for _ in range(100):
        w = op.apply(v)
        new = float(v @ w)
        v = w / w.norm()
        if abs(new - lam) <= 1e-6 * abs(new):
            lam = new
            break
        lam = new
    return lam


def pydvl_removal_scores(
    method: str,
    X_train: ArrayLike,  # noqa: N803
    y_train: ArrayLike,
    X_query: ArrayLike,  # noqa: N803
    y_query: ArrayLike,
    coef: ArrayLike,
    intercept: ArrayLike | None,
    *,
    l2: float,
    classes: int | Sequence[Any] | NDArray,
    **kwargs: Any,
) -> NDArray[np.float64]:
    """Compute removal influence scores of a logistic regression with pyDVL.

    Parameters
    ----------
    method : {"direct", "cg", "lissa", "arnoldi"}
        pyDVL solver: ``DirectInfluence``, ``CgInfluence``, ``LissaInfluence``
        or ``ArnoldiInfluence``.
    X_train : array-like of shape (n, d)
        Preprocessed training features.
    y_train : array-like of shape (n,)
        Training labels as class indices ``0..n_classes-1``.
    X_query : array-like of shape (m, d)
        Preprocessed query features.
    y_query : array-like of shape (m,)
        Query labels as class indices.
    coef : array-like of shape (K, d)
        ``LogisticRegression.coef_`` (``K = 1`` for binary problems).
    intercept : array-like of shape (K,) or None
        ``LogisticRegression.intercept_``, or None without intercept.
    l2 : float
        Penalty ``lambda`` on the mean-loss scale (``1 / (C n)``); the
        intercept is not penalised.
    classes : int or sequence
        Number of classes, or the class labels (``clf.classes_``).
    **kwargs
        Passed to the pyDVL constructor and override the defaults
        (cg: ``rtol=1e-4, atol=1e-6``, ``maxiter`` = 10 times the number of
        parameters; lissa: ``maxiter=5000, rtol=1e-6``
        and ``scale`` = 1.05 times a power-iteration estimate of the largest
        Hessian eigenvalue; arnoldi: ``rank=10, tol=1e-6``).  Do not pass
        ``regularization`` unless a damped Hessian is wanted.

    Returns
    -------
    ndarray of shape (m, n)
        ``S[j, i] = grad l(query_j)^T H^{-1} grad l(train_i)``, with ``H`` the
        Hessian of the penalised mean objective; ``S / n`` predicts the
        change of the query loss when training point ``i`` is removed.

    Raises
    ------
    ValueError
        On an unknown method or inconsistent shapes.
    """
    method = method.lower()
    if method not in _DEFAULTS:
        raise ValueError(f"unknown method {method!r}; use one of {list(_DEFAULTS)}")
    pit, influence_mode = _import_pydvl()

    coef_arr = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    b_arr = None if intercept is None else np.asarray(intercept, np.float64).ravel()
    x_tr = np.asarray(X_train, dtype=np.float64)
    x_q = np.atleast_2d(np.asarray(X_query, dtype=np.float64))
    y_tr = np.asarray(y_train).astype(np.int64).ravel()
    y_q = np.asarray(y_query).astype(np.int64).ravel()
    n_classes = int(classes) if np.ndim(classes) == 0 else len(classes)
    k, d = coef_arr.shape
    binary = n_classes == 2
    if (binary and k != 1) or (not binary and k != n_classes):
        raise ValueError(f"coef has {k} rows but there are {n_classes} classes")
    if x_tr.shape[1] != d or x_q.shape[1] != d:
        raise ValueError("feature dimension does not match coef")
    if b_arr is not None and b_arr.shape != (k,):
        raise ValueError("intercept must have shape (K,)")
    if len(y_tr) != len(x_tr) or len(y_q) != len(x_q):
        raise ValueError("labels and features differ in length")

    model = _BiasGatedLinear(coef_arr, b_arr)
    lab_dtype = torch.float64 if binary else torch.int64

    def rows(x: NDArray, keep_bias: float) -> torch.Tensor:
        gate = np.full((len(x), 1), keep_bias)
        return torch.as_tensor(np.hstack([x, gate]), dtype=torch.float64)

    eye = np.eye(d)
    fit_x = [rows(x_tr, 1.0), rows(eye, 0.0)]
    fit_y = [y_tr, np.full(d, _PENALTY)]
    mu = 0.0
    if not binary:
        mu = (l2 if l2 > 0 else 1.0) / k  # gauge eigenvalue mu * K
        if b_arr is not None:
            fit_x.append(rows(np.zeros((1, d)), 1.0))
            fit_y.append(np.array([_GAUGE]))
        if l2 <= 0:
            fit_x.append(rows(eye, 0.0))
            fit_y.append(np.full(d, _GAUGE))
    z_fit = torch.cat(fit_x)
    t_fit = torch.as_tensor(np.concatenate(fit_y), dtype=lab_dtype)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(z_fit, t_fit), batch_size=len(z_fit)
    )
    loss = _make_loss(binary, float(l2), mu)

    options = {**_DEFAULTS[method], **kwargs}
    if method == "direct":
        infl = pit.DirectInfluence(model, loss, **options)
    elif method == "cg":
        if options.get("maxiter") is None:
            # pyDVL's fallback is 10 * len(rhs), which for solve_simultaneously=True
            # is 10 * (number of queries) instead of 10 * (number of parameters).
            options["maxiter"] = 10 * sum(p.numel() for p in model.parameters())
        infl = pit.CgInfluence(model, loss, **options)
    elif method == "lissa":
        if "scale" not in options:
            options["scale"] = 1.05 * _estimate_lambda_max(model, loss, loader)
        infl = pit.LissaInfluence(model, loss, **options)
    else:
        infl = pit.ArnoldiInfluence(model, loss, **options)
    infl = infl.fit(loader)

    scores = infl.influences(
        rows(x_q, 1.0),
        torch.as_tensor(y_q, dtype=lab_dtype),
        rows(x_tr, 1.0),
        torch.as_tensor(y_tr, dtype=lab_dtype),
        mode=influence_mode.Up,
    )
    # pyDVL's Up mode is +g_q^T H^{-1} g_i already: identity conversion.
    return scores.detach().cpu().numpy().astype(np.float64, copy=False)


# Defaults for pydvl_module_scores; user kwargs override them.  The CG ``atol``
# and the LiSSA ``scale`` are computed from the data unless given.
_MODULE_DEFAULTS: dict[str, dict[str, Any]] = {
    "direct": {},
    "cg": {"rtol": 0.0},
    "lissa": {"maxiter": 20000, "rtol": 1e-10, "dampen": 0.0},
    "arnoldi": {"rank": 10, "tol": 1e-6},
}
# CG stops when ||residual|| < atol**2; atol**2 defaults to this times the
# smallest nonzero query-gradient norm (a relative test for every query).
_CG_REL_RESIDUAL = 1e-10


def _query_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> NDArray:
    """Norms of the per-sample cross-entropy gradients.

    Parameters
    ----------
    model : nn.Module
        The model; only parameters with ``requires_grad=True`` count.
    x : Tensor of shape (m, d)
        Inputs.
    y : Tensor of shape (m,)
        Integer targets.

    Returns
    -------
    ndarray of shape (m,)
        ``||grad_theta CE(model(x_j), y_j)||`` for every row.
    """
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor):
        out = torch.func.functional_call(model, p, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
    sq = sum(g.reshape(len(x), -1).pow(2).sum(dim=1) for g in grads.values())
    return torch.as_tensor(sq).sqrt().detach().cpu().numpy()


def pydvl_module_scores(
    method: str,
    module: nn.Module,
    X_train: ArrayLike,  # noqa: N803
    y_train: ArrayLike,
    X_query: ArrayLike,  # noqa: N803
    y_query: ArrayLike,
    *,
    regularization: float,
    **kwargs: Any,
) -> NDArray[np.float64]:
    r"""Compute removal influence scores of a torch classifier with pyDVL.

    The model is assumed to minimise
    ``J(theta) = mean_i CE(module(x_i), y_i) + (regularization / 2) ||theta||^2``
    over all its parameters, so pyDVL's ``regularization`` (which adds
    ``regularization * I`` to the Hessian of the mean loss) gives exactly the
    Hessian of ``J``.  Extra damping is added to ``regularization`` by the
    caller.

    Parameters
    ----------
    method : {"direct", "cg", "lissa", "arnoldi"}
        pyDVL solver: ``DirectInfluence``, ``CgInfluence``, ``LissaInfluence``
        or ``ArnoldiInfluence``.
    module : nn.Module
        Trained model mapping ``(n, d)`` inputs to ``(n, K)`` logits.  It is
        deep-copied, cast to float64 and put in eval mode; the caller's module
        is not modified.  Parameters with ``requires_grad=False`` are treated
        as constants by pyDVL.
    X_train : array-like of shape (n, d)
        Training inputs (as fed to ``module``).
    y_train : array-like of shape (n,)
        Training labels as class indices ``0..K-1``.
    X_query : array-like of shape (m, d)
        Query inputs.
    y_query : array-like of shape (m,)
        Query labels as class indices.
    regularization : float
        ``lambda`` of the training objective (plus any damping), added to the
        diagonal of the Hessian of the mean cross-entropy.
    **kwargs
        Passed to the pyDVL constructor and override the defaults:

        * cg: ``rtol=0.0``, ``atol = sqrt(1e-10 * min_j ||g_q_j||)`` (pyDVL
          stops when the residual norm is below ``atol**2``, so this is a
          relative residual of ``1e-10`` for the query with the smallest
          gradient, and smaller for the others), ``maxiter`` = 10 times the
          number of parameters.
        * lissa: ``maxiter=20000``, ``rtol=1e-10``, ``dampen=0.0`` and
          ``scale`` = 1.05 times (a power-iteration estimate of the largest
          eigenvalue of the mean-CE Hessian plus ``regularization``).  The
          iteration contracts by ``1 - lambda_min / scale`` per step, so it
          needs about ``1.05 * cond * log(1 / eps)`` steps; raise ``maxiter``
          for badly conditioned Hessians.
        * arnoldi: ``rank=10``, ``tol=1e-6`` (pyDVL's ``use_woodbury=False``:
          the directions outside the top ``rank`` eigenvectors are dropped).

    Returns
    -------
    ndarray of shape (m, n)
        ``S[j, i] = grad l(query_j)^T (H + regularization I)^{-1}
        grad l(train_i)`` with ``H`` the Hessian of the mean cross-entropy
        and ``l`` the unpenalised per-sample cross-entropy; ``S / n``
        predicts the change of the query loss when training point ``i`` is
        removed (positive: the point helps the query).

    Raises
    ------
    ValueError
        On an unknown method, a negative regularization or inconsistent
        shapes.
    """
    method = method.lower()
    if method not in _MODULE_DEFAULTS:
        raise ValueError(
            f"unknown method {method!r}; use one of {list(_MODULE_DEFAULTS)}"
        )
    reg = float(regularization)  # pyDVL treats a non-float as a block dict
    if reg < 0:
        raise ValueError("regularization must be non-negative")
    pit, influence_mode = _import_pydvl()

    model = copy.deepcopy(module).to(torch.float64).eval()
    x_tr = torch.as_tensor(np.asarray(X_train, dtype=np.float64))
    x_q = torch.as_tensor(np.atleast_2d(np.asarray(X_query, dtype=np.float64)))
    y_tr = torch.as_tensor(np.asarray(y_train).astype(np.int64).ravel())
    y_q = torch.as_tensor(np.asarray(y_query).astype(np.int64).ravel())
    if x_tr.ndim != 2 or x_q.shape[1:] != x_tr.shape[1:]:
        raise ValueError("X_train and X_query must be 2-D with the same width")
    if len(y_tr) != len(x_tr) or len(y_q) != len(x_q):
        raise ValueError("labels and features differ in length")

    loss = F.cross_entropy
    # One full batch: pyDVL's HessianOperator averages batches unweighted and
    # LiSSA draws one batch per step, so smaller batches change the matrix.
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_tr, y_tr), batch_size=len(x_tr)
    )

    options = {**_MODULE_DEFAULTS[method], **kwargs}
    if method == "direct":
        infl = pit.DirectInfluence(model, loss, regularization=reg, **options)
    elif method == "cg":
        if options.get("maxiter") is None:
            n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            options["maxiter"] = 10 * n_params
        if "atol" not in options:
            norms = _query_grad_norms(model, x_q, y_q)
            smallest = norms[norms > 0].min() if np.any(norms > 0) else 0.0
            options["atol"] = max(float(np.sqrt(_CG_REL_RESIDUAL * smallest)), 1e-150)
        infl = pit.CgInfluence(model, loss, regularization=reg, **options)
    elif method == "lissa":
        if "scale" not in options:
            lam = _estimate_lambda_max(model, loss, loader)
            options["scale"] = 1.05 * (lam + reg)
        infl = pit.LissaInfluence(model, loss, regularization=reg, **options)
    else:
        infl = pit.ArnoldiInfluence(model, loss, regularization=reg, **options)
    infl = infl.fit(loader)

    scores = infl.influences(x_q, y_q, x_tr, y_tr, mode=influence_mode.Up)
    # pyDVL's Up mode is +g_q^T (H + reg I)^{-1} g_i already: identity conversion.
    return scores.detach().cpu().numpy().astype(np.float64, copy=False)
