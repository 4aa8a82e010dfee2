"""``DaskInfluenceScorer``: influence of a training set held as a Dask array.

The training set never comes to the client: each row block builds the
adapter of the (already fitted, frozen) model on its own rows and returns
what it adds to the curvature; the client reduces, factors the ``p x p``
matrix and ships the factor back once.  Scores come back as Dask arrays.
Dask is an optional dependency, imported in ``fit``.
"""

from __future__ import annotations

import copy
import functools
import operator
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .. import _constants
from .._constants import AUTO_DAMPING_SCALE, STATIONARITY_ATOL
from ..influence import (
    TARGETS,
    block_influence,
    block_self_influence,
    block_statistics,
    curvature_factor,
    newton_step,
    objective_gradient,
    query_grads,
    warn_if_not_stationary,
)
from ..models import SubsetHessian, make_adapter
from ..utils._chunks import memory_budget_context, parse_memory_budget
from ..utils._sklearn_compat import HasMethods, Interval, StrOptions, _fit_context

_INSTALL = 'pip install "skinfluence[dask]"'

#: Model families whose adapters take the whole set's ``n`` per block.
_SUPPORTED = (
    "LinearRegression, Ridge, RidgeCV, RidgeClassifier(CV), LogisticRegression"
    "(CV), SGDClassifier, SGDRegressor, PoissonRegressor, GammaRegressor, "
    "TweedieRegressor (alone or as the last step of a Pipeline)"
)


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is in the dev extra
        raise ImportError(
            f"DaskInfluenceScorer needs dask[array] (and distributed for a "
            f"cluster): {_INSTALL}."
        ) from exc
    return dask, da


# ---------------------------------------------------------------------------
# Tasks: module-level so that worker processes can unpickle them
# ---------------------------------------------------------------------------


def _block_adapter(model, X, y, sample_weight, n_objective):
    return make_adapter(
        model, X, y, sample_weight=sample_weight, n_objective=n_objective
    )


def _stats_task(model, X, y, sample_weight, n_objective, memory_budget):
    # the worker's dense checks (data_hessian_sum) read the user's budget
    with memory_budget_context(memory_budget):
        adapter = _block_adapter(model, X, y, sample_weight, n_objective)
        return block_statistics(adapter, memory_budget=memory_budget)


def _self_influence_task(
    model, X, y, sample_weight, n_objective, factor, train_gradient, memory_budget
):
    with memory_budget_context(memory_budget):
        adapter = _block_adapter(model, X, y, sample_weight, n_objective)
        return block_self_influence(
            adapter, factor, train_gradient=train_gradient, memory_budget=memory_budget
        )


def _influence_task(
    model, X, y, sample_weight, n_objective, Qinv, train_gradient, memory_budget
):
    with memory_budget_context(memory_budget):
        adapter = _block_adapter(model, X, y, sample_weight, n_objective)
        return block_influence(
            adapter, Qinv, train_gradient=train_gradient, memory_budget=memory_budget
        )


def _ship(obj, dask):
    """Send ``obj`` to the workers once: broadcast to every worker when a
    ``distributed`` client is active, else one key in the graph that every
    block task depends on."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    # only when computations go to that client (not a scheduler set in config)
    scheduler = dask.base.get_scheduler()
    if client is None or getattr(scheduler, "__self__", None) is not client:
        return dask.delayed(obj, pure=True)
    return client.scatter(obj, broadcast=True)


def _sum(*parts):
    return functools.reduce(operator.add, parts)


def _class_counts(y, classes):
    y = np.asarray(y)
    codes = np.searchsorted(classes, y)
    codes = np.clip(codes, 0, len(classes) - 1)
    known = classes[codes] == y
    return np.bincount(codes[known], minlength=len(classes))[None, :]


def _check_family(model):
    """Refuse, before torch is imported, a model with no eager adapter
    (networks load theirs lazily; their Hessian is not a closed form)."""
    fallback = make_adapter.registry[object]
    if make_adapter.dispatch(type(model)) is fallback:
        raise TypeError(
            f"DaskInfluenceScorer cannot score {type(model).__name__} blockwise: "
            "it needs a model whose summed Hessian over a row block is a closed "
            f"form. Supported: {_SUPPORTED}. Score networks in memory with "
            "InfluenceScorer."
        )


def _final_model(estimator):
    """The frozen model's last step (the one influence differentiates)."""
    model = estimator.estimator
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


class DaskInfluenceScorer(MetaEstimatorMixin, BaseEstimator):
    """Influence over a training set held as a Dask array, scored on a cluster.

    For training sets larger than one machine's memory (read from Parquet or
    Zarr into a ``dask.array``) and a model already fitted on them, wrapped
    in ``FrozenEstimator``.  ``fit`` sends every row block to the workers,
    which build the model's adapter on their rows and return the block's
    summed data Hessian and gradient; the client adds the penalty at the
    whole set's ``n``, factors ``H + damping I`` (Cholesky, with an eigen
    pseudo-inverse fallback) and keeps the ``p x p`` factor.
    :meth:`self_influence` and :meth:`influence` return Dask arrays computed
    blockwise on the workers (the factor, or the preconditioned queries,
    shipped once); ``.compute()`` them, or reduce them on the cluster
    (``da.argtopk``) and pull only the result.  The numbers equal
    :class:`~skinfluence.InfluenceScorer` with ``curvature="exact"`` on the
    same data in memory.

    Parameters
    ----------
    estimator : FrozenEstimator
        ``FrozenEstimator(model)``, ``model`` fitted on the training set (or
        a ``Pipeline`` ending in it; earlier steps are fixed preprocessing)
        and of a family with a closed-form Hessian: ``LinearRegression``,
        ``Ridge``, ``LogisticRegression``, ``RidgeClassifier``,
        ``SGDClassifier``, ``SGDRegressor``, ``PoissonRegressor``,
        ``GammaRegressor``, ``TweedieRegressor`` and their CV variants.
        Fitting on out-of-core data is the user's job (e.g. ``dask-ml``, or
        a model fitted on a sample and frozen); a non-frozen estimator is
        refused.
    damping : float or "auto", default=0.0
        Non-negative Tikhonov damping added to the curvature; ``"auto"``:
        1e-3 times its mean eigenvalue.
    train_gradient : {"auto", "loss", "total"}, default="auto"
        Training-side gradient, as in :class:`~skinfluence.InfluenceScorer`:
        ``"loss"`` matches refitting at the same hyper-parameters when the
        penalty is on the sum scale (``C``, Ridge's ``alpha``), ``"total"``
        when the model averages its loss (SGD, GLMs); ``"auto"`` picks the
        one that matches the wrapped model.
    memory_budget : int, str or None, default=None
        Bytes, or a string such as ``"2GB"``/``"512MiB"`` (as for
        :class:`~skinfluence.InfluenceScorer`).  The dense ``p x p``
        curvature (held on the client and built on every worker) is refused
        above it, before anything is computed; per-row gradients inside a
        block are taken in sub-blocks of this size.  ``None``: the library's
        dense budget
        (``skinfluence._constants.DENSE_MEMORY_BUDGET_BYTES``) for the
        curvature, 256 MiB for sub-blocks.
    verbose : int, default=0
        Accepted for symmetry with :class:`~skinfluence.InfluenceScorer`;
        follow the work on the Dask dashboard instead.

    Attributes
    ----------
    memory_budget_ : int or None
        ``memory_budget`` in bytes.
    estimator_ : FrozenEstimator
        The frozen model the blocks differentiate (``class_weight="balanced"``
        replaced by the equivalent per-class weights, counted on the whole
        set).
    n_train_ : int
        Rows of the training set: the ``n`` of the objective, so removing
        row ``i`` changes ``f`` by about ``S / n_train_``.
    n_features_in_ : int
    n_params_ : int
    n_blocks_ : int
        Row blocks of the training set.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    damping_ : float
        The damping used (``"auto"`` resolved).
    factorization_ : {"cholesky", "eigen"}
        How ``H + damping I`` was factored.
    grad_norm_ : float
        Norm of the training objective's gradient at the fitted parameters;
        a :class:`~skinfluence.exceptions.NotAtOptimumWarning` says when it is
        large.
    train_gradient_ : {"loss", "total"}
        ``train_gradient`` with ``"auto"`` resolved.

    See Also
    --------
    skinfluence.InfluenceScorer : The same scores for data in memory.

    Notes
    -----
    Per block, the adapter knows only its rows, so whatever the objective
    takes from the whole set is computed on the cluster first: ``n`` (the
    penalty ``1/(C n)``, ``alpha/n``), the class counts behind
    ``class_weight="balanced"``, the total sample weight a GLM normalises
    by.  The training arrays are kept (lazily) on the fitted object and read
    again by every score request.  ``class_weight="balanced"`` together
    with ``sample_weight`` is refused (scikit-learn 1.9's
    ``LogisticRegression`` counts the classes by sample weight, other models
    and versions do not): refit with the explicit per-class dict.
    ``HuberRegressor`` (its scale is fitted
    jointly with a penalty on the sum scale) and networks are not supported.

    Examples
    --------
    >>> import dask
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinfluence import DaskInfluenceScorer, InfluenceScorer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((400, 3))
    >>> y = (X[:, 0] + rng.standard_normal(400) > 0).astype(int)
    >>> model = LogisticRegression(tol=1e-10).fit(X, y)
    >>> Xd, yd = da.from_array(X, chunks=100), da.from_array(y, chunks=100)
    >>> with dask.config.set(scheduler="synchronous"):  # a Client works as well
    ...     scorer = DaskInfluenceScorer(FrozenEstimator(model)).fit(Xd, yd)
    ...     s = scorer.self_influence()  # a dask array, (400,)
    ...     top = da.argtopk(s, 5).compute()  # reduced on the cluster
    ...     S = scorer.influence(X[:2], y[:2]).compute()
    >>> S.shape
    (2, 400)
    >>> local = InfluenceScorer(FrozenEstimator(model), curvature="exact").fit(X, y)
    >>> bool(np.allclose(S, local.influence(X[:2], y[:2]), rtol=1e-10))
    True
    >>> expected = np.argsort(local.self_influence_)[-5:]
    >>> bool(np.array_equal(np.sort(top), np.sort(expected)))
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "damping": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "train_gradient": [StrOptions({"auto", "loss", "total"})],
        "memory_budget": [Interval(Integral, 1, None, closed="left"), str, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator,
        *,
        damping=0.0,
        train_gradient="auto",
        memory_budget=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.damping = damping
        self.train_gradient = train_gradient
        self.memory_budget = memory_budget
        self.verbose = verbose

    # -- fit ----------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Reduce the curvature over the row blocks and factor it.

        Parameters
        ----------
        X : dask.array.Array of shape (n_samples, n_features)
            Training inputs, chunked along rows (columns are brought to one
            block).  Chunk sizes must be known (``compute_chunk_sizes()``
            or ``to_dask_array(lengths=True)``).
        y : dask.array.Array or array-like of shape (n_samples,) or \
(n_samples, n_targets)
            Training targets; rechunked to the rows of ``X``.
        sample_weight : dask.array.Array or array-like of shape \
(n_samples,), default=None
            The weights the model was fitted with (they enter the objective,
            as in :class:`~skinfluence.InfluenceScorer`).

        Returns
        -------
        self : DaskInfluenceScorer
        """
        dask, da = _import_dask()
        self.__dict__.pop("classes_", None)  # a refit keeps no stale state
        self.memory_budget_ = parse_memory_budget(self.memory_budget)
        estimator = self.estimator
        if not isinstance(estimator, FrozenEstimator):
            raise TypeError(
                "DaskInfluenceScorer scores a model already fitted on the "
                "out-of-core training set; it does not fit one. Got "
                f"estimator={type(estimator).__name__}; fit the model (e.g. with "
                "dask-ml, or on a sample) and pass FrozenEstimator(model)."
            )
        check_is_fitted(
            estimator.estimator,
            msg=(
                "The model inside the FrozenEstimator is not fitted; "
                "DaskInfluenceScorer scores a fitted model. Fit %(name)s on the "
                "training set first, then freeze it."
            ),
        )
        X = self._check_X(X, da)
        rows = X.chunks[0]
        n = int(X.shape[0])
        y = self._check_rows(y, "y", rows, n, da)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D; got {y.ndim} dimensions.")
        if sample_weight is not None:
            sample_weight = self._check_rows(
                sample_weight, "sample_weight", rows, n, da
            )
            if sample_weight.ndim != 1:
                raise ValueError(
                    f"sample_weight must have shape ({n},), one weight per row of "
                    f"X; got {sample_weight.shape}."
                )

        # whatever the objective takes from the whole set, counted on the cluster
        model = _final_model(estimator)
        _check_family(model)
        balanced = getattr(model, "class_weight", None) == "balanced"
        if balanced and sample_weight is not None:
            raise ValueError(
                "class_weight='balanced' together with sample_weight is refused: "
                "scikit-learn counts the classes by sample weight for some models "
                "and versions and not for others, so the per-class weights the "
                f"{type(model).__name__} was fitted with cannot be recovered. Refit "
                "it with class_weight set to the explicit {class: weight} dict, or "
                "drop sample_weight."
            )
        todo = {}
        if sample_weight is not None:
            todo["finite"] = da.isfinite(sample_weight).all()
            todo["min"] = sample_weight.min()
            todo["total"] = sample_weight.sum()
        if balanced:
            classes = np.asarray(model.classes_)
            todo["counts"] = da.map_blocks(
                _class_counts,
                y,
                classes,
                chunks=((1,) * y.numblocks[0], (len(classes),)),
                new_axis=1,
                dtype=np.intp,
            ).sum(axis=0)
        found = dask.compute(todo, optimize_graph=False)[0] if todo else {}
        total = None
        if sample_weight is not None:
            total = self._check_weights(found)
        if balanced:
            estimator = self._resolve_balanced(estimator, classes, found["counts"], n)

        # the model and what a block's adapter needs, checked on one row
        probe = self._probe(estimator, X, y, total, n)
        p = int(probe.n_params)
        budget = self.memory_budget_
        if budget is None:
            budget = _constants.DENSE_MEMORY_BUDGET_BYTES
        if 8 * p * p > budget:
            raise ValueError(
                f"The dense curvature for {p} parameters is a {p} x {p} float64 "
                f"matrix ({8 * p * p / 2**30:.3g} GiB) on the client and on every "
                f"worker, over memory_budget={budget} bytes. Raise memory_budget, "
                "or reduce the parameters (fewer features or classes); "
                "DaskInfluenceScorer has no matrix-free curvature."
            )

        model_d = dask.delayed(estimator, pure=True)
        X_blocks, y_blocks, w_blocks = self._blocks(X, y, sample_weight)
        parts = [
            dask.delayed(_stats_task, pure=True)(
                model_d, Xb, yb, wb, n, self.memory_budget_
            )
            for Xb, yb, wb in zip(X_blocks, y_blocks, w_blocks, strict=True)
        ]
        while len(parts) > 1:  # tree reduction, 8 blocks per node
            parts = [
                dask.delayed(_sum, pure=True)(*parts[i : i + 8])
                for i in range(0, len(parts), 8)
            ]
        stats = parts[0].compute(optimize_graph=False)

        penalty = np.asarray(probe.penalty, dtype=np.float64)
        null = np.asarray(probe.null_basis, dtype=np.float64)
        theta = np.asarray(probe.params(), dtype=np.float64)
        if not np.all(np.isfinite(theta)):
            raise ValueError(
                f"The frozen {type(_final_model(estimator)).__name__} has non-finite "
                "parameters (NaN or inf), so it has no gradients or curvature to "
                "take influence from. Refit it and check the data are finite."
            )
        self._factor, self.damping_ = curvature_factor(
            stats,
            penalty,
            null,
            n_objective=n,
            damping=self.damping,
            auto_scale=AUTO_DAMPING_SCALE,
        )
        grad, scale = objective_gradient(stats, penalty, theta, null)
        self.grad_norm_ = float(np.linalg.norm(grad))
        step = signal = None
        if self.grad_norm_ > STATIONARITY_ATOL:
            step = newton_step(self._factor, grad)
            signal = self._removal_signal(estimator, X, y, sample_weight, n)
        warn_if_not_stationary(self.grad_norm_, scale, step, signal)

        self.estimator_ = estimator
        self.n_train_ = n
        self.n_features_in_ = int(X.shape[1])
        self.n_params_ = p
        self.n_blocks_ = len(rows)
        self.factorization_ = self._factor.method
        if probe.is_classifier:
            self.classes_ = np.asarray(_final_model(estimator).classes_)
        self.train_gradient_ = self.train_gradient
        if self.train_gradient == "auto":
            self.train_gradient_ = probe.removal_gradient
        self._probe_adapter = probe
        self._data = (X, y, sample_weight)
        return self

    def _check_X(self, X, da):
        if not isinstance(X, da.Array):
            raise TypeError(
                f"X must be a dask.array.Array; got {type(X).__name__}. Wrap it "
                "(da.from_array, da.from_zarr, dd.read_parquet(...).to_dask_array("
                "lengths=True)) or use InfluenceScorer for data in memory."
            )
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got {X.shape}.")
        if any(np.isnan(c) for dim in X.chunks for c in dim):
            raise ValueError(
                "X has unknown chunk sizes (NaN), so its rows cannot be matched to "
                "y and counted. Call X.compute_chunk_sizes() first, or build it "
                "with to_dask_array(lengths=True)."
            )
        if X.shape[0] == 0:
            raise ValueError("X has no rows.")
        if X.numblocks[1] != 1:  # a row block holds every feature of its rows
            X = X.rechunk({1: -1})
        return X

    def _check_rows(self, a, name, rows, n, da):
        if not isinstance(a, da.Array):
            a = np.asarray(a)
            if a.ndim == 0 or a.shape[0] != n:
                raise ValueError(
                    f"{name} has {a.shape[0] if a.ndim else 0} rows for the {n} "
                    "rows of X; pass one entry per row of X."
                )
            return da.from_array(a, chunks=(rows,) + a.shape[1:])
        if a.ndim == 0 or any(np.isnan(c) for c in a.chunks[0]):
            raise ValueError(
                f"{name} has unknown chunk sizes (NaN); call "
                f"{name}.compute_chunk_sizes() first."
            )
        if a.shape[0] != n:
            raise ValueError(
                f"{name} has {a.shape[0]} rows for the {n} rows of X; pass one "
                "entry per row of X."
            )
        if a.chunks[0] != rows or a.ndim > 1 and a.numblocks[1] != 1:
            a = a.rechunk((rows,) + tuple(-1 for _ in a.shape[1:]))
        return a

    @staticmethod
    def _check_weights(found):
        if not bool(found["finite"]):
            raise ValueError(
                "sample_weight contains NaN or infinity; give every row a finite "
                "weight."
            )
        if float(found["min"]) < 0:
            raise ValueError(
                "sample_weight must be non-negative; got a minimum of "
                f"{float(found['min']):.3g}. Drop rows instead of giving them "
                "negative weight."
            )
        total = float(found["total"])
        if not total > 0:
            raise ValueError(
                "sample_weight is zero for every row; give at least one row a "
                "positive weight."
            )
        return total

    @staticmethod
    def _resolve_balanced(estimator, classes, counts, n):
        """``class_weight="balanced"`` as the dict it means on the whole set.

        A block's adapter would count only its own rows; scikit-learn's
        ``n / (n_classes * count_k)`` on the whole set is what the model was
        fitted with.
        """
        counts = np.asarray(counts).reshape(-1)
        if int(counts.sum()) != n or np.any(counts == 0):
            missing = classes[counts == 0]
            raise ValueError(
                "class_weight='balanced' needs every class of the model in y; "
                f"classes {missing!r} have no rows (or y holds labels the model "
                "never saw). Pass the labels the model was fitted on."
            )
        weights = n / (len(classes) * counts.astype(np.float64))
        resolved = copy.deepcopy(estimator.estimator)
        final = _final_model(FrozenEstimator(resolved))
        final.class_weight = {
            c: float(w) for c, w in zip(classes, weights, strict=True)
        }
        return FrozenEstimator(resolved)

    def _probe(self, estimator, X, y, total, n):
        """The model's adapter on the first row, with the whole set's ``n``
        (and total sample weight): its penalty and flat directions are the
        whole set's, and it answers the query gradients."""
        dask, _ = _import_dask()
        Xp, yp = dask.compute(X[:1], y[:1], optimize_graph=False)
        # the one row carries the whole set's total weight: a GLM's penalty
        # sits on the scale of weights normalised by that total
        wp = None if total is None else np.array([total])
        name = type(_final_model(estimator)).__name__
        try:
            probe = _block_adapter(estimator, Xp, yp, wp, n)
        except TypeError as exc:
            if "n_objective" not in str(exc) and "no model adapter" not in str(exc):
                raise
            raise TypeError(
                f"DaskInfluenceScorer cannot score {name} blockwise: each block's "
                "adapter must take the whole set's n and give its summed Hessian. "
                f"Supported: {_SUPPORTED}. Score it in memory with InfluenceScorer."
            ) from exc
        if not isinstance(probe, SubsetHessian):
            raise TypeError(
                f"DaskInfluenceScorer cannot score {name} blockwise: its adapter "
                "has no summed data Hessian (SubsetHessian). Supported: "
                f"{_SUPPORTED}. Score it in memory with InfluenceScorer."
            )
        return probe

    def _removal_signal(self, estimator, X, y, sample_weight, n, n_rows=32):
        """Typical removal shift ``sqrt(g_i^T A^{-1} g_i) / n`` on evenly spaced
        rows (see :func:`skinfluence.influence.optimum_error`)."""
        idx = np.unique(np.linspace(0, n - 1, min(n, n_rows)).astype(np.intp))
        dask, _ = _import_dask()
        picked = [X[idx], y[idx]] + (
            [] if sample_weight is None else [sample_weight[idx]]
        )
        picked = dask.compute(*picked, optimize_graph=False)
        w = picked[2] if len(picked) > 2 else None
        adapter = _block_adapter(estimator, picked[0], picked[1], w, n)
        s = block_self_influence(adapter, self._factor, train_gradient="loss")
        return float(np.sqrt(max(np.mean(s), 0.0))) / n

    @staticmethod
    def _blocks(X, y, sample_weight):
        # unoptimised: a key keeps one definition across every graph sent to
        # the scheduler (optimised graphs may alias it differently each time)
        X_blocks = X.to_delayed(optimize_graph=False).ravel()
        y_blocks = y.to_delayed(optimize_graph=False).ravel()
        if sample_weight is None:
            w_blocks = [None] * len(X_blocks)
        else:
            w_blocks = sample_weight.to_delayed(optimize_graph=False).ravel()
        return X_blocks, y_blocks, w_blocks

    # -- scores -------------------------------------------------------------

    def self_influence(self):
        """Self-influence of every training row, as a Dask array.

        Returns
        -------
        s : dask.array.Array of shape (n_train_,)
            ``g_i^T (H + damping I)^{-1} g_i >= 0`` (with
            ``train_gradient="total"`` the right factor is the total
            gradient, and the value can be negative), chunked as the rows of
            ``X``.  Lazy: ``.compute()`` it, or reduce it on the cluster
            (``da.argtopk(s, k)``).
        """
        check_is_fitted(self)
        dask, da = _import_dask()
        factor_d = _ship(self._factor, dask)
        return self._per_block(
            _self_influence_task, factor_d, lambda b: (b,), da, dask, axis=0
        )

    def influence(self, X, y=None, *, target="loss"):
        """Influence of every training row on each query row, as a Dask array.

        Parameters
        ----------
        X : array-like of shape (n_query, n_features)
            Query inputs (in memory; a Dask array is computed first).
        y : array-like of shape (n_query,), default=None
            Query targets; required for ``target="loss"``.
        target : {"loss", "prediction"}, default="loss"
            The measured quantity ``f``, as
            :meth:`skinfluence.InfluenceScorer.influence`.

        Returns
        -------
        S : dask.array.Array of shape (n_query, n_train_)
            ``S[j, i] = grad f_j^T (H + damping I)^{-1} g_i``: removing
            training row ``i`` changes ``f_j`` by about ``S[j, i] /
            n_train_`` (for ``target="loss"``, positive: ``i`` helps ``j``).
            Chunked along the training rows as ``X`` was; the preconditioned
            queries are solved on the client and shipped once.
        """
        check_is_fitted(self)
        dask, da = _import_dask()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")
        X = np.asarray(X.compute() if isinstance(X, da.Array) else X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X must have shape (n_query, {self.n_features_in_}); got {X.shape}."
            )
        if y is not None:
            y = np.asarray(y.compute() if isinstance(y, da.Array) else y)
            if len(y) != len(X):
                raise ValueError(
                    f"y has {len(y)} rows for the {len(X)} query rows of X."
                )
        Gq = np.asarray(query_grads(self._probe_adapter, X, y, target))
        Qinv = self._factor.solve(Gq.T)  # (p, m)
        Qinv_d = _ship(Qinv, dask)
        m = len(X)
        return self._per_block(
            _influence_task, Qinv_d, lambda b: (m, b), da, dask, axis=1
        )

    def _per_block(self, task, shipped, shape, da, dask, *, axis):
        X, y, sample_weight = self._data
        model_d = dask.delayed(self.estimator_, pure=True)
        out = []
        for Xb, yb, wb, b in zip(
            *self._blocks(X, y, sample_weight), X.chunks[0], strict=True
        ):
            d = dask.delayed(task, pure=True)(
                model_d,
                Xb,
                yb,
                wb,
                self.n_train_,
                shipped,
                self.train_gradient_,
                self.memory_budget_,
            )
            out.append(da.from_delayed(d, shape=shape(b), dtype=np.float64))
        return da.concatenate(out, axis=axis)
