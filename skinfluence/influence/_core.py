"""Influence math, blocked over query x train so memory stays bounded.

Sign convention (one for the whole library)::

    S[j, i] = grad f_j(theta)^T (H + damping I)^{-1} g_i

where ``g_i`` is training point ``i``'s (weighted) loss gradient.  Removing
training point ``i`` and refitting changes ``f_j`` by about ``S[j, i] / n``.
With ``f`` a query loss, ``S > 0`` means point ``i`` helps query ``j``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._constants import (
    NEWTON_STATIONARITY_RTOL,
    STATIONARITY_ATOL,
    STATIONARITY_RTOL,
)
from ..curvature import CGCurvature, EKFACCurvature, KFACCurvature
from ..exceptions import NotAtOptimumWarning
from ..models import CurvatureSampler, GradientProducts
from ..utils._chunks import (
    block_budget,
    chunk_size,
    chunks,
    context_budget,
    dense_budget,
    format_bytes,
    map_blocks,
)
from ..utils._linalg import check_dense_fits
from ..utils._progress import progress
from ..utils._validation import check_indices
from ._kronecker import (
    kronecker_pairwise,
    kronecker_self_influence,
    outer_product_layers,
)

TARGETS = ("loss", "prediction")


def query_grads(
    adapter: Any, X: ArrayLike, y: ArrayLike | None, target: str
) -> NDArray:
    """Gradients of the measured quantity ``f`` for each query row, (m, p)."""
    if target == "loss":
        if y is None:
            raise ValueError(
                "target='loss' needs y; pass y or use target='prediction'."
            )
        return adapter.loss_grads(X, y)
    if target == "prediction":
        return adapter.prediction_grads(X)
    raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")


def _solve_width(adapter: Any, backend: Any) -> int:
    """Float64 temporaries one right-hand side of ``backend.solve`` costs; a
    backend that does not say (a third-party one) is assumed matrix-free."""
    width = getattr(backend, "solve_width", None)
    if callable(width):
        return max(1, int(width(adapter)))
    return adapter.n_params + max(adapter.n_params, adapter.n_train * adapter.n_outputs)


def _solve_block(
    adapter: Any,
    batch_size: int | None,
    backend: Any = None,
    budget: int | None = None,
    *,
    extra: int = 0,
) -> int:
    """Right-hand sides per solve: ``budget / (8 * (width + extra))``.

    ``width`` is what one right-hand side of ``backend.solve`` allocates
    (:meth:`CurvatureBackend.solve_width`: ``~p`` for a stored factor, ``~n
    K`` for a matrix-free product); ``extra`` the caller's own values per
    right-hand side (the solution it keeps, the gradient row).  Without a
    backend, the matrix-free width (the conservative legacy rule).  A budget
    the user set that cannot hold one right-hand side is refused.
    """
    if batch_size is not None:
        return int(batch_size)
    if backend is None:
        width = max(adapter.n_params, adapter.n_train * adapter.n_outputs)
    else:
        width = _solve_width(adapter, backend)
    width += extra
    limit = block_budget(budget)
    explicit = budget is not None or context_budget() is not None
    if explicit and 8 * width > limit:
        raise ValueError(
            f"memory_budget={limit} bytes ({format_bytes(limit)}) cannot hold one "
            f"right-hand side of {type(backend).__name__}: it needs "
            f"{format_bytes(8 * width)} of temporaries ({width} float64 values: "
            f"{adapter.n_params} parameters, {adapter.n_train} training rows x "
            f"{adapter.n_outputs} outputs). Raise memory_budget, or use a backend "
            "with a stored factor, whose right-hand sides cost ~n_params values: "
            "curvature='exact' (if its p x p factor fits), 'kfac'/'ekfac', "
            "'lowrank' or 'diagonal'."
        )
    return max(1, limit // (8 * width))


def _grad_products(adapter: Any, Q: NDArray, rows: Any, total: bool) -> NDArray:
    """``train_grads(rows, total) @ Q``, without dense gradients when the
    adapter multiplies them in itself (:class:`GradientProducts`)."""
    if isinstance(adapter, GradientProducts):
        return np.asarray(adapter.train_grad_products(Q, rows, total=total))
    return adapter.train_grads(rows, total=total) @ Q


def _solve_columns(
    backend: Any, V: NDArray, size: int, n_jobs: int | None, verbose: int, desc: str
) -> NDArray:
    """``backend.solve(V)`` in blocks of ``size`` columns (in parallel)."""
    blocks = list(chunks(V.shape[1], size))
    parts = map_blocks(
        lambda c: backend.solve(V[:, c]),
        progress(blocks, desc=desc, verbose=verbose),
        n_jobs=n_jobs,
    )
    if len(parts) == 1:
        return parts[0]
    return np.hstack(parts) if parts else np.empty((V.shape[0], 0))


def pairwise_influence(
    adapter: Any,
    backend: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    *,
    target: str = "loss",
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
    memory_budget: int | None = None,
    n_jobs: int | None = None,
) -> NDArray:
    """``S[j, i] = grad f_j^T (H + damping I)^{-1} g_i``, shape (m, n_train).

    The query side is preconditioned (``backend.solve`` on blocks of query
    gradients, sized from :meth:`~CurvatureBackend.solve_width` and the
    memory budget) and multiplied against training gradients streamed in
    row chunks.  When the preconditioned queries ``(p, m)`` fit the budget
    they are solved first and the training gradients are streamed once;
    otherwise, per query block, the training gradients are streamed again
    unless all of them (``n x p``) fit the budget, in which case they are
    built once.  Adapters with :class:`~skinfluence.models.GradientProducts`
    multiply the gradients in themselves (sparse features).  ``n_jobs``
    runs the blocks through ``joblib``; every block is the same computation
    whatever the number of workers, so results equal the sequential ones.
    """
    Gq = query_grads(adapter, X, y, target)
    n, p = adapter.n_train, adapter.n_params
    m = len(Gq)
    total = train_gradient == "total"
    budget = block_budget(memory_budget)
    # blocks are sized from the whole budget whatever n_jobs is, so every
    # block is the same computation and the results equal the sequential
    # ones; with n_jobs workers up to n_jobs blocks are in memory at once
    share = memory_budget
    S = np.empty((m, n))
    if m == 0:
        return S
    # nn.Linear-only networks: scores from layer statistics (outer products),
    # cheaper than their per-row autograd gradients.  Not for closed-form
    # (convex) models, whose gradients are cheap: at n = 30,000, 10 classes,
    # p = 510, 100 queries, train_grads @ Q took 0.08 CPU s, the layer
    # statistics 0.27 s; nor for adapters multiplying gradients themselves.
    fast_ok = train_gradient == "loss" and not isinstance(adapter, GradientProducts)
    fast_ok = fast_ok and not getattr(adapter, "is_convex", True)
    layers = outer_product_layers(adapter) if fast_ok else None
    qsize = _solve_block(adapter, batch_size, backend, share, extra=p)

    def stream(Qinv: NDArray, rows: slice) -> None:
        """``S[rows] = G Qinv`` over training chunks (in parallel)."""
        tsize = chunk_size(p + Qinv.shape[1], batch_size, budget=share)
        tblocks = list(chunks(n, tsize))
        parts = map_blocks(
            lambda t: _grad_products(adapter, Qinv, t, total).T, tblocks, n_jobs=n_jobs
        )
        for t, part in zip(tblocks, parts, strict=True):
            S[rows, t] = part

    if 8 * p * m <= budget:  # all preconditioned queries held: one pass over G
        Qinv = _solve_columns(backend, Gq.T, qsize, n_jobs, verbose, "influence")
        fast = None if layers is None else kronecker_pairwise(adapter, layers, Qinv)
        if fast is not None:
            return fast
        stream(Qinv, slice(None))
        return S
    cache = None
    if not isinstance(adapter, GradientProducts) and 8 * n * p <= budget // 2:
        cache = np.empty((n, p))  # built once, reused by every query block
        for t in chunks(n, chunk_size(p, batch_size, budget=share)):
            cache[t] = adapter.train_grads(t, total=total)
    for q in progress(list(chunks(m, qsize)), desc="influence", verbose=verbose):
        Qinv = backend.solve(Gq[q].T)  # (p, b)
        fast = None if layers is None else kronecker_pairwise(adapter, layers, Qinv)
        if fast is not None:
            S[q] = fast
            continue
        layers = None
        if cache is not None:
            S[q] = (cache @ Qinv).T
        else:
            stream(Qinv, q)
    return S


#: Self-influence methods, cheapest first where each applies: "kronecker"
#: (K-FAC/EK-FAC eigenbasis, layer statistics, no per-row gradients),
#: "factor" (one half solve W = L^{-1} g and a squared norm per row),
#: "inverse" (``p`` solves assemble ``C^{-1}``, then ``g^T C^{-1} g`` per
#: row: exact, for matrix-free backends when ``p`` is the fewest solves),
#: "sketch" (``k`` probe solves for all rows, an unbiased estimate with
#: relative standard error ``sqrt(2 / k)``: matrix-free CG on a model that
#: can sample its curvature), "solve" (one full solve per row, blocked).
SELF_INFLUENCE_METHODS = ("kronecker", "factor", "inverse", "sketch", "solve")


def self_influence_plan(
    adapter: Any,
    backend: Any,
    *,
    train_gradient: str = "loss",
    memory_budget: int | None = None,
    n_probes: int | None = None,
) -> str:
    """How :func:`self_influence` will compute ``g_i^T C^{-1} g_i`` for every row.

    Chosen by cost, cheapest first among the methods that apply:

    - ``"kronecker"``: a :class:`KFACCurvature`/:class:`EKFACCurvature` with
      exact damping on layers whose gradients are outer products: squared
      rotated layer statistics, no per-row gradient (``train_gradient=
      "loss"`` only);
    - ``"factor"``: the backend has ``half_solve`` (a Cholesky, eigen,
      diagonal, low-rank or Kronecker factor): ``||L^{-1} g_i||^2``, one
      triangular solve per row instead of two;
    - ``"inverse"``: a backend without a factor (CG, LiSSA, ...) when
      ``n_params`` solves are the fewest (fewer than the rows, and no more
      than the sketch's probes) and the ``p x p`` inverse fits the dense
      budget: the inverse assembled column block by column block, then
      ``g_i^T C^{-1} g_i`` per row, exact;
    - ``"sketch"``: with ``n_probes``, a :class:`CGCurvature` (no factor,
      one iterative solve per row) on a model that samples its curvature
      (:class:`~skinfluence.models.CurvatureSampler`, the linear models and
      GLMs), ``train_gradient="loss"`` and more than ``2 n_probes`` rows:
      ``n_probes`` solves give every row an unbiased estimate with relative
      standard error ``sqrt(2 / n_probes)``
      (:func:`~skinfluence.influence.sketched_self_influence`);
    - ``"solve"``: one solve per row, in blocks sized by the backend's
      ``solve_width`` and the memory budget.

    Every method but ``"sketch"`` is exact (relative standard error 0).

    Parameters
    ----------
    adapter : ModelAdapter
    backend : CurvatureBackend
        Fitted.
    train_gradient : {"loss", "total"}, default="loss"
    memory_budget : int or None, default=None
        Bytes per block (the blocks of every method fit any budget that
        holds one right-hand side).
    n_probes : int or None, default=None
        Probes of the sketch; ``None`` never sketches.

    Returns
    -------
    method : str
        One of ``SELF_INFLUENCE_METHODS``.
    """
    if train_gradient == "loss" and _kronecker_applies(adapter, backend):
        return "kronecker"
    if callable(getattr(backend, "half_solve", None)):
        return "factor"
    n, p = adapter.n_train, adapter.n_params
    sketch = (
        n_probes is not None
        and train_gradient == "loss"
        and isinstance(backend, CGCurvature)
        and isinstance(adapter, CurvatureSampler)
        and n > 2 * n_probes
    )
    # "total" would sketch a bilinear form whose error sqrt(2/k) only bounds
    # it from below: it is solved exactly.  Cheapest in solves: p (exact),
    # n_probes (sketch), n (exact); ties go to the exact one.
    if _inverse_pays(adapter, memory_budget) and (not sketch or p <= n_probes):
        return "inverse"
    if sketch:
        return "sketch"
    return "solve"


def _inverse_pays(adapter: Any, memory_budget: int | None) -> bool:
    """Whether assembling ``C^{-1}`` from ``n_params`` solves beats one solve
    per row (fewer solves) and its ``p x p`` fits the dense budget."""
    p = adapter.n_params
    return p < adapter.n_train and 8 * p * p <= dense_budget(memory_budget)


def _kronecker_applies(adapter: Any, backend: Any) -> bool:
    """The conditions of :func:`kronecker_self_influence`, checked cheaply."""
    if type(backend) not in (KFACCurvature, EKFACCurvature):
        return False
    if getattr(backend, "damping_mode", "exact") != "exact":
        return False
    return outer_product_layers(adapter) is not None


def self_influence_result(
    adapter: Any,
    backend: Any,
    *,
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
    method: str | None = None,
    memory_budget: int | None = None,
    n_jobs: int | None = None,
    n_probes: int | None = None,
    random_state: Any = None,
) -> tuple[NDArray, str, float]:
    """Self-influence with the method that computed it and its error.

    Parameters
    ----------
    adapter, backend
        As :func:`self_influence`.
    train_gradient : {"loss", "total"}, default="loss"
    batch_size : int or None, default=None
        Rows per block; ``None`` sizes blocks from the memory budget.
    verbose : int, default=0
    method : str or None, default=None
        One of ``SELF_INFLUENCE_METHODS``; ``None``: :func:`self_influence_plan`.
    memory_budget : int or None, default=None
        Bytes per block.
    n_jobs : int or None, default=None
        Row blocks through ``joblib`` (threads unless a
        ``joblib.parallel_config`` says otherwise).
    n_probes : int or None, default=None
        Probes of the sketch (the plan's, and ``method="sketch"``'s).
    random_state : int, RandomState instance or None, default=None
        Seed of the sketch's probes.

    Returns
    -------
    values : ndarray of shape (n_train,)
    method : str
        The method used (``"kronecker"`` falls back to the next one when a
        layer's statistics turn out not to be outer products; ``"sketch"``
        to ``"inverse"`` or ``"solve"`` when the model's curvature has no
        square-root factor, an indefinite observed Hessian).
    rel_se : float
        Relative standard error of each value: 0.0 for the exact methods,
        ``sqrt(2 / n_probes)`` for the sketch.
    """
    if method is None:
        method = self_influence_plan(
            adapter,
            backend,
            train_gradient=train_gradient,
            memory_budget=memory_budget,
            n_probes=n_probes,
        )
    if method not in SELF_INFLUENCE_METHODS:
        raise ValueError(
            f"method must be one of {SELF_INFLUENCE_METHODS}; got {method!r}."
        )
    if method == "kronecker":
        # K-FAC/EK-FAC: a weighted sum of squared rotated factors per row
        fast = kronecker_self_influence(adapter, backend)
        if fast is not None:
            return fast, "kronecker", 0.0
        method = "factor" if callable(getattr(backend, "half_solve", None)) else "solve"
    if method == "sketch":
        from ._sketch import sketched_self_influence

        if n_probes is None:
            raise ValueError("method='sketch' needs n_probes (e.g. 200).")
        try:
            values, rel_se = sketched_self_influence(
                adapter,
                backend,
                n_probes=n_probes,
                random_state=random_state,
                train_gradient=train_gradient,
                batch_size=batch_size,
                verbose=verbose,
            )
            return values, "sketch", rel_se
        except ValueError as exc:
            if "cannot be sampled" not in str(exc):  # curvature_sample's refusal
                raise
            # no square-root factor to sample: the cheaper exact method
            method = "inverse" if _inverse_pays(adapter, memory_budget) else "solve"
    n, p = adapter.n_train, adapter.n_params
    total = train_gradient == "total"
    share = memory_budget  # per block, independent of n_jobs (see above)
    sides = 2 if total else 1
    if method == "inverse":
        check_dense_fits(p, "inverse curvature", budget=dense_budget(memory_budget))
        inv = np.empty((p, p))
        for c in chunks(p, _solve_block(adapter, batch_size, backend, share)):
            E = np.zeros((p, c.stop - c.start))
            E[np.arange(c.start, c.stop), np.arange(c.stop - c.start)] = 1.0
            inv[:, c] = backend.solve(E)
        inv = 0.5 * (inv + inv.T)  # symmetric up to the solver's tolerance
        # per row: its gradient(s) and G @ inv
        size = chunk_size((sides + 1) * p, batch_size, budget=share)

        def block(t: slice) -> NDArray:
            G = adapter.train_grads(t)
            Gt = adapter.train_grads(t, total=True) if total else G
            return np.einsum("ij,ij->i", G @ inv, Gt)

    elif method == "factor":
        # per row: the gradient(s) and their half solves with its temporaries
        width = _solve_width(adapter, backend)
        size = _solve_block(
            adapter, batch_size, backend, share, extra=(sides - 1) * width + sides * p
        )

        def block(t: slice) -> NDArray:
            G = adapter.train_grads(t)
            W = backend.half_solve(G.T)
            if not total:
                return np.einsum("ij,ij->j", W, W)
            Wt = backend.half_solve(adapter.train_grads(t, total=True).T)
            return np.einsum("ij,ij->j", W, Wt)

    else:
        size = _solve_block(adapter, batch_size, backend, share, extra=(sides + 1) * p)

        def block(t: slice) -> NDArray:
            G = adapter.train_grads(t)
            Gt = adapter.train_grads(t, total=True) if total else G
            return np.einsum("ij,ji->i", G, backend.solve(Gt.T))

    blocks = list(chunks(n, size))
    parts = map_blocks(
        block, progress(blocks, desc="self-influence", verbose=verbose), n_jobs=n_jobs
    )
    out = np.empty(n)
    for t, part in zip(blocks, parts, strict=True):
        out[t] = part
    return out, method, 0.0


def self_influence(
    adapter: Any,
    backend: Any,
    *,
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
    method: str | None = None,
    memory_budget: int | None = None,
    n_jobs: int | None = None,
    n_probes: int | None = None,
    random_state: Any = None,
) -> NDArray:
    """``g_i^T (H + damping I)^{-1} g_i`` for every training point, shape (n,).

    With ``train_gradient="total"`` the right factor is the total gradient, as
    in :func:`pairwise_influence`: the value is then the predicted change of
    point ``i``'s own loss on its removal, and can be negative.  The method
    is :func:`self_influence_plan`'s unless given; see
    :func:`self_influence_result` for the parameters.
    """
    return self_influence_result(
        adapter,
        backend,
        train_gradient=train_gradient,
        batch_size=batch_size,
        verbose=verbose,
        method=method,
        memory_budget=memory_budget,
        n_jobs=n_jobs,
        n_probes=n_probes,
        random_state=random_state,
    )[0]


def parameter_change(
    adapter: Any, backend: Any, indices: ArrayLike, *, train_gradient: str = "loss"
) -> NDArray:
    """Predicted ``theta_{-i} - theta`` for each listed point, shape (k, p)."""
    idx = check_indices(indices, adapter.n_train)
    if idx.size == 0:
        return np.zeros((0, adapter.n_params))
    G = adapter.train_grads(idx, total=train_gradient == "total")
    return backend.solve(G.T).T / adapter.n_train


def stationarity(
    adapter: Any,
    batch_size: int | None = None,
    *,
    memory_budget: int | None = None,
    n_jobs: int | None = None,
) -> tuple[float, float]:
    """``||grad J||`` and the scale it is judged against, at the fitted parameters.

    The scale is the root-mean-square per-sample gradient norm plus the norm
    of the penalty's gradient: the two terms that cancel at an optimum.
    Row blocks fit ``memory_budget`` (bytes; ``None``: the default) and run
    through ``joblib`` with ``n_jobs``; their sums are added in row order,
    so the result does not depend on ``n_jobs``.
    """
    n, p = adapter.n_train, adapter.n_params
    blocks = list(chunks(n, chunk_size(p, batch_size, budget=memory_budget)))

    if isinstance(adapter, GradientProducts):
        # closed-form per-row norms: no (b, p) gradient block (n x p dense
        # writes on a 50,000-feature sparse model)
        def squares(t: slice) -> float:
            return float(np.sum(adapter.train_grad_sq_norms(t)))

    else:

        def squares(t: slice) -> float:
            G = adapter.train_grads(t)
            return float(np.einsum("ij,ij->", G, G))  # no squared copy

    parts = map_blocks(squares, blocks, n_jobs=n_jobs)
    sq = 0.0
    for part in parts:
        sq += part
    penalty_grad = np.linalg.norm(adapter.penalty * adapter.params())
    scale = float(np.sqrt(sq / n) + penalty_grad)
    return float(np.linalg.norm(adapter.objective_grad())), scale


def optimum_error(adapter: Any, backend: Any, n_rows: int = 32) -> tuple[float, float]:
    """How far the fit is from the optimum, against the shifts influence predicts.

    One Newton step ``d = H^{-1} grad J`` is the distance to the optimum to
    first order; a removal moves the parameters by ``H^{-1} g_i / n``.  Both
    are measured in the ``H`` norm: ``sqrt(grad J^T d)`` against the
    root-mean-square ``sqrt(g_i^T H^{-1} g_i) / n`` over ``n_rows`` evenly
    spaced training rows.  A ratio above 1 says the fit is farther from its
    optimum than removing a typical point moves it: retraining differs from
    the model mostly by the unfinished optimisation, and the scores, taken at
    the wrong point, shift too (a few percent in the measured cases).  A
    relative gradient test (``||grad J||`` against the per-sample gradients)
    misses this when ``H`` is ill-conditioned (e.g.
    ``LogisticRegression(C=np.inf)`` at its default ``tol``).
    """
    gJ = np.asarray(adapter.objective_grad(), dtype=float).reshape(-1)
    d = np.asarray(backend.solve(gJ[:, None]), dtype=float).reshape(-1)
    n = adapter.n_train
    rows = np.unique(np.linspace(0, n - 1, min(n, n_rows)).astype(np.intp))
    G = np.asarray(adapter.train_grads(rows), dtype=float)
    Z = np.asarray(backend.solve(G.T), dtype=float)
    signal = float(np.sqrt(max(np.mean(np.sum(G.T * Z, axis=0)), 0.0))) / n
    return float(np.sqrt(max(float(gJ @ d), 0.0))), signal


def warn_if_not_stationary(
    grad_norm: float,
    grad_scale: float,
    step: float | None = None,
    signal: float | None = None,
) -> None:
    """Warn when the objective gradient is large relative to per-sample ones.

    An absolute floor keeps exact fits (all gradients ~ 0) quiet.  With
    ``step`` and ``signal`` (from :func:`optimum_error`) it also warns when the
    Newton step to the optimum exceeds ``NEWTON_STATIONARITY_RTOL`` times a
    typical removal shift: the results would be off by that fraction.
    """
    far = step is not None and signal is not None and grad_norm > STATIONARITY_ATOL
    far = far and step > NEWTON_STATIONARITY_RTOL * signal
    if far:
        warnings.warn(
            f"The fitted model is not at an optimum of its training objective: "
            f"one Newton step to the optimum ({step:.3g} in the curvature norm) is "
            f"{step / signal:.2g} times a typical leave-one-out parameter shift "
            f"({signal:.3g}), so retraining would move the model more by finishing "
            "the optimisation than by removing a point, and the scores are taken "
            "away from the optimum they assume. "
            "Tighten the model's tol (e.g. tol=1e-10) or raise max_iter. A frozen "
            "model fitted with sample_weight needs the same weights: pass "
            "sample_weight to fit.",
            NotAtOptimumWarning,
            stacklevel=3,
        )
    elif grad_norm > max(STATIONARITY_RTOL * grad_scale, STATIONARITY_ATOL):
        warnings.warn(
            f"The fitted model is not at an optimum of its training objective: "
            f"||grad J|| = {grad_norm:.3g} vs a gradient scale (per-sample and "
            f"penalty) of {grad_scale:.3g}. Influence assumes an optimum; tighten the "
            "model's tol or raise max_iter, and fit it on the same data. A frozen "
            "model fitted with sample_weight needs the same weights: pass "
            "sample_weight to fit.",
            NotAtOptimumWarning,
            stacklevel=3,
        )
