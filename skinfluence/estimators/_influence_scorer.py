"""``InfluenceScorer``: influence functions as a scikit-learn meta-estimator."""

from __future__ import annotations

import functools
import inspect
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    TransformerMixin,
    clone,
    is_classifier,
)
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils import (
    Bunch,
    TransformerTags,
    check_array,
    check_consistent_length,
    column_or_1d,
    get_tags,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from .._constants import SKETCH_PROBES, STATIONARITY_ATOL
from ..curvature import CURVATURES, make_curvature
from ..influence import (
    TARGETS,
    group_influence,
    input_perturbation,
    label_change,
    newton_pairwise,
    newton_parameter_change,
    newton_self_influence,
    optimum_error,
    pairwise_influence,
    parameter_change,
    query_grads,
    regression_diagnostics,
    self_influence_plan,
    self_influence_result,
    self_prediction_influence,
    stationarity,
    top_influence,
    tracin_pairwise,
    warn_if_not_stationary,
)
from ..models import NamedParameters, make_adapter
from ..utils._chunks import memory_budget_context, parse_memory_budget
from ..utils._sklearn_compat import (
    HasMethods,
    Interval,
    StrOptions,
    _fit_context,
    _num_samples,
    _routing_enabled,
)
from ..utils._validation import check_indices
from ._defaults import _ReachableDefaults


def _estimator_has(attr: str):
    """Check the fitted ``estimator_`` if present, else the unfitted ``estimator``."""

    def check(self) -> bool:
        est = getattr(self, "estimator_", None) or self._get_estimator()
        getattr(est, attr)
        return True

    return check


def _is_stochastic(curvature) -> bool:
    """Whether the backend named or given draws random numbers when solving."""
    if isinstance(curvature, str):
        if curvature not in CURVATURES:
            return False
        curvature = CURVATURES[curvature]()
    return get_tags(curvature).non_deterministic


def _fit_weighted(estimator, X, y, sample_weight):
    """``estimator.fit(X, y)`` with the weights given to its final model.

    A ``Pipeline`` takes them as ``<last step>__sample_weight`` unless
    metadata routing is enabled (then as ``sample_weight``, routed by the
    requests the user set).  A ``FrozenEstimator`` ignores them.
    """
    if sample_weight is None:
        return estimator.fit(X, y)
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if any(c.__module__.split(".")[0] == "skorch" for c in type(final).__mro__):
        # skorch passes extra fit arguments on to the module's forward, where
        # a forward(**kwargs) would drop the weights silently
        raise TypeError(
            f"{type(final).__name__}.fit has no sample_weight (skorch passes extra "
            "fit arguments to the module's forward), so it cannot be fitted with "
            "weights. Train it on the weighted loss yourself and pass "
            "FrozenEstimator(net) with sample_weight=..., use TorchClassifier/"
            "TorchRegressor, or drop sample_weight."
        )
    if isinstance(estimator, Pipeline) and not _routing_enabled():
        return estimator.fit(
            X, y, **{f"{estimator.steps[-1][0]}__sample_weight": sample_weight}
        )
    try:
        return estimator.fit(X, y, sample_weight=sample_weight)
    except TypeError as exc:
        if "sample_weight" not in str(exc):
            raise
        raise TypeError(
            f"{type(estimator).__name__}.fit does not accept sample_weight, so it "
            "cannot be fitted with weights; fit it yourself and pass "
            "FrozenEstimator(model) with the weights, or drop sample_weight."
        ) from exc


def _check_sample_weight(sample_weight, X):
    """Non-negative, finite, one per row, not all zero."""
    w = check_array(
        sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
    )
    n = _num_samples(X)
    if w.ndim != 1 or len(w) != n:
        raise ValueError(
            f"sample_weight must have shape ({n},), one weight per row of X; got "
            f"{w.shape}."
        )
    if np.any(w < 0):
        raise ValueError(
            "sample_weight must be non-negative; got a minimum of "
            f"{w.min():.3g}. Drop rows instead of giving them negative weight."
        )
    if not np.any(w > 0):
        raise ValueError(
            "sample_weight is zero for every row; give at least one row a "
            "positive weight."
        )
    return w


def _in_budget(method):
    """Run a fitted scorer's method inside its memory budget, so every block
    the influence code sizes (several calls deep) honours it."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with memory_budget_context(self.__dict__.get("memory_budget_")):
            return method(self, *args, **kwargs)

    return wrapper


def _accepts_memory_budget(backend) -> bool:
    """Whether ``backend.fit`` takes ``memory_budget`` (a third-party backend
    written before it existed may not)."""
    try:
        params = inspect.signature(backend.fit).parameters
    except (TypeError, ValueError):
        return False
    return "memory_budget" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def _check_method(method) -> str:
    if method not in ("first_order", "newton"):
        raise ValueError(f"method must be 'first_order' or 'newton'; got {method!r}.")
    return method


def _is_1d(X) -> bool:
    shape = getattr(X, "shape", None)
    if shape is None:
        shape = np.asarray(X, dtype=object).shape
    return len(shape) == 1


class InfluenceScorer(
    _ReachableDefaults, TransformerMixin, MetaEstimatorMixin, BaseEstimator
):
    """Influence of each training point on predictions and losses.

    Wraps a scikit-learn model, fits it (a ``FrozenEstimator`` stays frozen; a
    ``Pipeline``'s earlier steps are treated as fixed preprocessing) and
    answers influence questions with the selected curvature.  It behaves as
    the wrapped model otherwise: ``predict``, ``predict_proba``,
    ``decision_function`` and ``score`` are delegated, and ``is_classifier``/
    ``is_regressor`` answer as for the wrapped model, so it can be the last
    step of a ``Pipeline`` inside ``GridSearchCV`` or ``cross_val_score``.

    Parameters
    ----------
    estimator : estimator object, default=None
        A differentiable model, possibly inside a ``Pipeline`` (earlier steps
        are fixed preprocessing) or a ``FrozenEstimator``: scikit-learn's
        ``LinearRegression``, ``Ridge``/``RidgeCV``, ``RidgeClassifier``/
        ``RidgeClassifierCV``, ``LogisticRegression``/``LogisticRegressionCV``
        (L2 or no penalty), ``SGDClassifier(loss="log_loss")``,
        ``SGDRegressor(loss="squared_error")``, ``PoissonRegressor``,
        ``GammaRegressor``, ``TweedieRegressor``, ``HuberRegressor``,
        ``MLPClassifier``/``MLPRegressor``; a torch network through
        :class:`~skinfluence.TorchClassifier`/:class:`~skinfluence.TorchRegressor`
        or a fitted skorch net; or any model registered with
        :func:`skinfluence.models.make_adapter`.  A CV model's selected
        hyper-parameter is held fixed.  ``None`` means
        ``LogisticRegression()``.
    curvature : str or CurvatureBackend, default="auto"
        How ``(H + damping I)^{-1}`` is applied: ``"exact"`` (dense Hessian,
        Cholesky), ``"cg"`` (conjugate gradient on Hessian products),
        ``"lissa"`` (stochastic Neumann series), ``"ef"`` (empirical Fisher,
        the gradients' outer product), ``"diagonal"``, ``"ggn"`` (Gauss-Newton
        matrix), ``"lowrank"`` (top eigenpairs by Lanczos), ``"kfac"`` /
        ``"ekfac"`` (Kronecker-factored per ``nn.Linear``/``nn.Conv2d``
        layer; ``"auto"`` damping is 0.1 x each layer's mean eigenvalue),
        ``"blockggn"``
        (exact Gauss-Newton blocks per layer) or ``"identity"`` (gradient dot
        product).  ``"auto"`` is ``"exact"`` for convex models (the
        scikit-learn linear models and GLMs) while the dense ``p x p``
        factor fits ``memory_budget`` (by default 1 GiB, about 11,500
        parameters) and ``"cg"`` above, and the Gauss-Newton family for
        networks, whose Hessian is indefinite away from an optimum: ``"ggn"``
        up to 5000 parameters and
        ``CGCurvature(operator="ggn")`` above.  ``curvature_`` shows the
        choice.  A backend object keeps its own parameters, reachable as
        ``curvature__<name>``.
    damping : float or "auto", default=0.0
        Non-negative Tikhonov damping added to the curvature.  ``"auto"``: a
        fraction of the curvature's mean eigenvalue (1e-3; 0.1 for ``"ef"``).
    train_gradient : {"auto", "loss", "total"}, default="auto"
        Training-side gradient.  ``"loss"``: the per-sample loss gradient,
        which matches refitting without the point at the *same*
        hyper-parameters when the model's penalty is on the sum scale
        (``LogisticRegression``'s ``C``, ``Ridge``'s ``alpha``, an MLP's
        ``alpha``).  ``"total"``: the loss gradient plus the row's share of
        the L2 gradient, which matches a refit at a fixed per-sample
        regularisation strength (Koh & Liang) -- and therefore the refit at
        the same hyper-parameters of models that average their loss
        (``SGDClassifier``/``SGDRegressor``'s ``alpha``, the GLMs'
        ``alpha``).  ``"auto"``: whichever of the two matches refitting the
        wrapped model at its own hyper-parameters (``train_gradient_`` says
        which; ``"loss"`` for networks, where PBRF is the ground truth).
    batch_size : int, default=None
        Rows per block of gradients and scores; ``None`` picks the largest
        block inside the memory budget.
    memory_budget : int, str or None, default=None
        Bytes that any one allocation scaling with the data or the parameters
        may take: an int, or a string such as ``"2GB"`` or ``"512MiB"``
        (decimal and binary units).  Blocks of gradients, solves and scores
        are sized from it, for the path actually taken (a stored factor
        costs ~``n_params`` values per right-hand side, a matrix-free product
        ~``n_train * n_outputs``); a dense ``p x p`` curvature that does not
        fit is refused before anything is allocated, naming the budget, the
        size needed and the matrix-free backends that fit.  With ``n_jobs``
        workers each block gets ``1 / n_jobs`` of it.  ``None``: 256 MiB per
        block and 1 GiB for a dense curvature
        (``skinfluence._constants.MEMORY_BUDGET_BYTES`` and
        ``DENSE_MEMORY_BUDGET_BYTES``).  It bounds the blocks, not the
        results: ``influence`` returns ``n_query x n_train`` scores.
    n_jobs : int or None, default=None
        Workers for the row blocks of ``influence`` and ``self_influence_``
        (and the gradient pass of ``fit``), through ``joblib`` (threads:
        BLAS, LAPACK and torch release the GIL; a ``joblib.parallel_config``
        backend or ``n_jobs`` in effect applies).  ``None``: 1 unless a
        ``joblib.parallel_config`` says otherwise; ``-1``: all cores.  Results
        equal the sequential ones.  The evaluation loops (leave-one-out,
        LDS) read it as their default.
    sketch_probes : int or None, default=200
        Probes of the sketched self-influence, used when the curvature is
        matrix-free conjugate gradient (``"cg"``, what ``"auto"`` picks when
        the dense factor does not fit the memory budget) on a linear model
        or GLM with more than ``2 * sketch_probes`` training rows: every
        row's ``self_influence_`` then comes from ``sketch_probes`` solves
        instead of one solve per row, an unbiased estimate whose relative
        standard error is ``sqrt(2 / sketch_probes)`` (10 % at 200, exactly:
        each value is the true one times ``chi2_k / k``), recorded in
        ``self_influence_error_``.  ``None``: always exact (one CG solve per
        row).  ``influence`` and the other questions are never sketched.
    random_state : int, RandomState instance or None, default=None
        Seed for stochastic curvature backends (``lissa``, ``lowrank``,
        ``diagonal`` probes) whose own ``random_state`` is ``None``, and for
        the sketch's probes.
    verbose : int, default=0
        Show progress bars on long work when positive.
    dtype : {"float64", "float32"} or None, default=None
        Precision of a network's gradients and curvature products (torch
        models: ``TorchClassifier``/``TorchRegressor``, skorch nets, MLPs).
        ``None``: float64 (a ``TorchClassifier``'s own ``dtype``).
        ``"float32"`` halves memory and time; scores agree with float64 to
        about the float32 rounding times the curvature's condition number.
        Solves and results stay float64 numpy.  Networks only.
    device : str, torch.device or None, default=None
        Where a network's products run (``"cpu"``, ``"cuda"``,
        ``"cuda:<index>"``, a ``torch.device``); ``None``: the CPU.  An
        unavailable device is refused at ``fit``.  Networks only.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone of ``estimator`` (or the frozen estimator itself).
    adapter_ : ModelAdapter
        Gradients, Hessian products and the retrain hook of the fitted model.
    curvature_ : CurvatureBackend
        The fitted curvature backend.
    n_train_ : int
        Number of training points (the rows the model was trained on): the
        ``n`` of the objective, so removal changes ``f`` by ``S / n_train_``.
    n_samples_fit_ : int
        Number of rows of the ``X`` passed to ``fit``.  Every result with one
        entry per training row (``influence`` columns, ``self_influence_``,
        ``parameter_change`` indices, ``diagnostics`` rows, the ground truths'
        ``indices``) is indexed by these rows.
    train_indices_ : ndarray of shape (n_train_,)
        The rows of the ``X`` passed to ``fit`` the model trained on: all of
        them, except for a skorch net with a ``train_split``, whose validation
        rows never entered training.  Those rows have exact removal influence
        0 in every result.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when ``X`` has string column
        names.
    classes_ : ndarray of shape (n_classes,)
        Class labels (classifiers only).
    grad_norm_ : float
        Norm of the gradient of the training objective at the fitted
        parameters.  Influence assumes an optimum; a
        :class:`~skinfluence.exceptions.NotAtOptimumWarning` is raised when it
        is large relative to the per-sample gradients.
    train_gradient_ : {"loss", "total"}
        The training gradient the fitted state was computed with
        (``train_gradient`` with ``"auto"`` resolved).
    self_influence_ : ndarray of shape (n_samples_fit_,)
        ``g_i^T (H + damping I)^{-1} g_i >= 0`` (with ``train_gradient="total"``
        the right factor is the total gradient: the predicted change of the
        point's own loss on removal, which can be negative).  Computed on
        first access, then stored, by ``self_influence_method_``.
    self_influence_method_ : {"kronecker", "factor", "inverse", "sketch", \
"solve"}
        How ``self_influence_`` is computed, chosen at ``fit`` by cost and
        memory: ``"kronecker"`` (K-FAC/EK-FAC: squared rotated layer
        statistics, no per-row gradient), ``"factor"`` (a backend with a
        stored factor: one triangular solve and a squared norm per row,
        ``||L^{-1} g_i||^2``); for a matrix-free backend (CG, LiSSA) the
        fewest solves of ``"inverse"`` (``n_params`` solves assemble the
        inverse curvature when it fits the memory budget, exact),
        ``"sketch"`` (CG: ``sketch_probes`` solves for all rows, see
        ``sketch_probes``) and ``"solve"`` (one solve per row, blocked),
        exact ones winning ties.  A sketch falls back to an exact method
        for a model whose curvature cannot be sampled (an indefinite
        observed Hessian, e.g. ``TweedieRegressor(power=3)``); the attribute
        then says so.
    self_influence_error_ : float
        Relative standard error of each ``self_influence_`` value: 0.0 for
        the exact methods, ``sqrt(2 / sketch_probes)`` for the sketch.
    memory_budget_ : int or None
        ``memory_budget`` in bytes (``None``: the defaults).

    See Also
    --------
    skinfluence.evaluation.loo_change : Actual leave-one-out retraining.
    skinfluence.evaluation.make_loo_scorer : The ``scoring=`` that ranks
        ``curvature`` and ``damping`` in ``GridSearchCV`` (see :meth:`score`).

    Notes
    -----
    Objective: :math:`J(\\theta) = \\frac1n\\sum_i w_i\\ell_i(\\theta) +
    \\frac12\\theta^\\top\\operatorname{diag}(\\lambda)\\theta`, read from the
    wrapped model exactly as scikit-learn defines it (``LogisticRegression``:
    :math:`\\lambda = 1/(Cn)` on ``coef_``, intercept unpenalised; ``Ridge``:
    :math:`\\lambda = \\alpha/n` with the half squared error).

    Sign convention: ``S[j, i] = grad f_j^T (H + damping I)^{-1} grad loss_i``.
    Removing training point ``i`` and refitting changes ``f_j`` by about
    ``S[j, i] / n_train_``; for ``f`` = a query loss, positive means ``i``
    helps ``j``.

    What ``fit`` refuses or warns about (each tested in
    ``tests/test_faults.py``):

    - a model that interpolates its training rows (every per-sample gradient
      zero with ``n_train <= n_params``, e.g. an unpenalised
      ``LinearRegression`` with more features than rows): ``UserWarning``.
      First-order influence is then 0 for every point under every curvature
      and damping, while actually removing a point moves the minimum-norm fit;
      use a penalised model (``Ridge``) instead.  It warns rather than
      refuses so that tiny fits (one sample, scikit-learn's estimator checks)
      still run;
    - a singular curvature otherwise (collinear features): the ``exact``
      backend warns and uses the pseudo-inverse; add ``damping``;
    - non-finite fitted parameters: ``ValueError``;
    - a fit that is not at an optimum: ``NotAtOptimumWarning`` when
      ``||grad J||`` is large against the per-sample gradients, or when one
      Newton step ``H^{-1} grad J`` (in the curvature norm) exceeds a typical
      leave-one-out shift ``H^{-1} g_i / n``: the fit is then farther from
      its optimum than removing a point moves it, so retraining cannot
      confirm the scores (skipped for stochastic backends and for networks,
      which are never at one optimum: PBRF is their reference).

    References
    ----------
    Koh, P. W. and Liang, P. "Understanding Black-box Predictions via
    Influence Functions." ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.evaluation import loo_change
    >>> X, y = load_diabetes(return_X_y=True)
    >>> scorer = InfluenceScorer(Ridge(alpha=1.0)).fit(X[:200], y[:200])
    >>> S = scorer.influence(X[200:203], y[200:203])
    >>> S.shape
    (3, 200)
    >>> actual = loo_change(scorer, X[200:201], y[200:201], indices=range(50))
    >>> bool(np.corrcoef(S[0, :50] / scorer.n_train_, actual[0])[0, 1] > 0.99)
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"]), None],
        "curvature": [
            StrOptions({"auto", *CURVATURES}),
            HasMethods(["fit", "solve"]),
        ],
        "damping": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "train_gradient": [StrOptions({"auto", "loss", "total"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "memory_budget": [Interval(Integral, 1, None, closed="left"), str, None],
        "n_jobs": [
            Interval(Integral, None, -1, closed="right"),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "sketch_probes": [Interval(Integral, 2, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "dtype": [StrOptions({"float64", "float32"}), None],
        "device": "no_validation",  # str or torch.device: checked by the adapter
    }

    def __init__(
        self,
        estimator=None,
        *,
        curvature="auto",
        damping=0.0,
        train_gradient="auto",
        batch_size=None,
        memory_budget=None,
        n_jobs=None,
        sketch_probes=SKETCH_PROBES,
        random_state=None,
        verbose=0,
        dtype=None,
        device=None,
    ):
        self.estimator = estimator
        self.curvature = curvature
        self.damping = damping
        self.train_gradient = train_gradient
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.n_jobs = n_jobs
        self.sketch_probes = sketch_probes
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device

    def _defaults(self):
        return {"estimator": LogisticRegression}

    def _get_estimator(self):
        return LogisticRegression() if self.estimator is None else self.estimator

    def _wraps_pipeline(self) -> bool:
        """A Pipeline validates (and may accept 1-D, e.g. text) input itself."""
        est = self._get_estimator()
        return isinstance(getattr(est, "estimator", est), Pipeline)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the wrapped model and the curvature.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,)
            Training targets, any label type for classifiers.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights.  They are passed to the wrapped model's
            ``fit`` (to the final step of a ``Pipeline``; a
            ``FrozenEstimator`` is not refitted) and enter the training
            objective ``J = (1/n) sum_i w_i loss_i + penalty``, so influence
            predicts the effect of removing a point from the *weighted* refit.
            A frozen model fitted with weights must be given the same weights
            here.

        Returns
        -------
        self : InfluenceScorer
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                "is None."
            )
        # a refit must not keep the last fit's state (validate_data keeps an
        # old n_features_in_ when the new X, e.g. a list of documents, has none)
        for stale in (
            "classes_",
            "self_influence_",
            "self_influence_error_",
            "n_features_in_",
            "feature_names_in_",
        ):
            self.__dict__.pop(stale, None)
        self.memory_budget_ = parse_memory_budget(self.memory_budget)
        validate_data(self, X, skip_check_array=True)
        check_consistent_length(X, y)
        estimator = self._get_estimator()
        if is_classifier(estimator):
            # The wrapped classifier's fit checks the target type (and a frozen
            # model's adapter rejects labels it does not know).
            y = column_or_1d(y, warn=True)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        self.estimator_ = _fit_weighted(clone(estimator), X, y, sample_weight)
        # dtype/device reach network adapters only (None: their defaults)
        precision = {
            k: v
            for k, v in (("dtype", self.dtype), ("device", self.device))
            if v is not None
        }
        try:
            # inside the budget: a network adapter sizes its row chunks here
            with memory_budget_context(self.memory_budget_):
                self.adapter_ = make_adapter(
                    self.estimator_,
                    X,
                    y,
                    sample_weight=sample_weight,
                    batch_size=self.batch_size,
                    verbose=self.verbose,
                    **precision,
                )
        except TypeError as exc:
            if not any(f"'{k}'" in str(exc) for k in precision):
                raise
            raise ValueError(
                f"dtype and device apply to torch networks (TorchClassifier, "
                f"TorchRegressor, skorch nets, MLPs); {type(self.estimator_).__name__}"
                " is computed in float64 numpy on the CPU. Leave dtype=None and "
                "device=None."
            ) from exc
        if not np.all(np.isfinite(self.adapter_.params())):
            raise ValueError(
                f"The fitted {type(self.estimator_).__name__} has non-finite "
                "parameters (NaN or inf), so it has no gradients or curvature to "
                "take influence from. Refit it (lower its learning rate, scale the "
                "features, or add regularisation) and check the data are finite."
            )
        self.n_train_ = self.adapter_.n_train
        # the DataFrame index of the training rows, for diagnostics()
        self._train_index = getattr(X, "index", None)
        self.train_indices_ = np.asarray(self.adapter_.train_indices)
        self.n_samples_fit_ = _num_samples(X)
        if self.adapter_.is_classifier:
            self.classes_ = self.estimator_.classes_
        with memory_budget_context(self.memory_budget_):
            self._fit_curvature()
        return self

    def _fit_curvature(self):
        """The curvature, the optimum checks and the self-influence plan,
        inside the memory budget."""
        self.curvature_ = make_curvature(
            self.curvature,
            self.adapter_,
            random_state=self.random_state,
            memory_budget=self.memory_budget_,
        )
        budget = {}
        if _accepts_memory_budget(self.curvature_):
            budget = {"memory_budget": self.memory_budget_}
        self.curvature_.fit(
            self.adapter_, damping=self.damping, verbose=self.verbose, **budget
        )
        self.grad_norm_, grad_scale = stationarity(
            self.adapter_,
            self.batch_size,
            memory_budget=self.memory_budget_,
            n_jobs=self.n_jobs,
        )
        if grad_scale <= STATIONARITY_ATOL and (
            self.adapter_.n_train <= self.adapter_.n_params
        ):
            warnings.warn(
                f"{type(self.estimator_).__name__} interpolates its training data "
                f"({self.adapter_.n_train} samples, {self.adapter_.n_params} "
                "parameters): every training gradient is zero, so first-order "
                "influence is 0 for every point (under any curvature or damping) "
                "while actually removing one changes the fit. Do not read these "
                "results as leave-one-out effects: use a penalised model (e.g. "
                "Ridge(alpha>0), LogisticRegression(C<inf)) or more rows than "
                "parameters.",
                UserWarning,
                stacklevel=2,
            )
        step = signal = None
        # the Newton-step check (33 extra solves) is for convex models, whose
        # refits are the ground truth; a network is never at one optimum, its
        # reference is PBRF, and a CG solve on one can take seconds
        convex = getattr(self.adapter_, "is_convex", True)  # optional member
        deterministic = not _is_stochastic(self.curvature_)
        if self.grad_norm_ > STATIONARITY_ATOL and deterministic and convex:
            step, signal = optimum_error(self.adapter_, self.curvature_)
        warn_if_not_stationary(self.grad_norm_, grad_scale, step, signal)
        self.train_gradient_ = self.train_gradient
        if self.train_gradient == "auto":
            self.train_gradient_ = self.adapter_.removal_gradient
        self.self_influence_method_ = self_influence_plan(
            self.adapter_,
            self.curvature_,
            train_gradient=self.train_gradient_,
            memory_budget=self.memory_budget_,
            n_probes=self.sketch_probes,
        )

    def _to_rows(self, A, axis=-1):
        """Results over the trained rows -> over the rows of the fit ``X``.

        A skorch ``train_split`` trains on part of ``X``; the rows it held
        out have exact removal influence 0.
        """
        n, idx = self.n_samples_fit_, self.train_indices_
        if len(idx) == n and np.array_equal(idx, np.arange(n)):
            return A
        A = np.moveaxis(np.asarray(A), axis, 0)
        out = np.zeros((n,) + A.shape[1:], dtype=A.dtype)
        out[idx] = A
        return np.moveaxis(out, 0, axis)

    def _trained_positions(self, indices):
        """Rows of the fit ``X`` -> positions among the trained rows (-1: held
        out)."""
        idx = check_indices(indices, self.n_samples_fit_)
        pos = np.full(self.n_samples_fit_, -1)
        pos[self.train_indices_] = np.arange(len(self.train_indices_))
        return pos[idx]

    @_in_budget
    def influence(self, X, y=None, *, target="loss", method="first_order"):
        """Influence of every training point on each query row.

        Parameters
        ----------
        X : array-like of shape (n_query, n_features)
            Query inputs.
        y : array-like of shape (n_query,), default=None
            Query targets; required for ``target="loss"``.
        target : {"loss", "prediction"}, default="loss"
            The measured quantity ``f``: the query's loss (no penalty), or the
            label-free prediction (regression: ``y_hat``; classification: the
            log-probability of the predicted class).
        method : {"first_order", "newton", "tracin"}, default="first_order"
            ``"first_order"``: the influence function.  ``"newton"``: one
            Newton step of the objective without the point, which includes
            the point's own curvature (Woodbury, ``n_outputs + 1`` solves per
            training row): exact for least squares and ridge (the leverage
            correction ``1 / (1 - h_i)``), the one-step estimate for GLMs and
            logistic regression, and the same step with the chosen backend's
            curvature otherwise (for networks each row's Gauss-Newton block;
            its agreement with PBRF is not established there).
            ``"tracin"``: TracInCP, ``S[j, i] = sum_k lr_k grad f_j(theta_k)^T
            grad loss_i(theta_k)`` over the checkpoints a skorch net saved
            with the :class:`~skinfluence.TracInCheckpoints` callback (the
            curvature is not used; see
            :func:`skinfluence.influence.tracin_pairwise`).

        Returns
        -------
        S : ndarray of shape (n_query, n_samples_fit_)
            ``S[j, i] = grad f_j^T (H + damping I)^{-1} grad loss_i``: removing
            training point ``i`` changes ``f_j`` by about ``S[j, i] / n_train_``.
            For ``target="loss"``, ``S[j, i] > 0`` means ``i`` helps ``j``
            (its removal would raise ``j``'s loss).  With ``method="newton"``,
            ``S[j, i] = n_train_ grad f_j^T dtheta_i`` for the Newton step
            ``dtheta_i``.
        """
        self._check_query(X, y, target)
        if method not in ("first_order", "newton", "tracin"):
            raise ValueError(
                f"method must be 'first_order', 'newton' or 'tracin'; got {method!r}."
            )
        if method == "tracin":
            kw = {"target": target, "batch_size": self.batch_size}
            S = tracin_pairwise(self.adapter_, X, y, **kw, verbose=self.verbose)
            return self._to_rows(S)
        if _check_method(method) == "newton":
            S = newton_pairwise(
                self.adapter_,
                self.curvature_,
                query_grads(self.adapter_, X, y, target),
                train_gradient=self.train_gradient_,
                batch_size=self.batch_size,
                verbose=self.verbose,
            )
        else:
            S = pairwise_influence(
                self.adapter_,
                self.curvature_,
                X,
                y,
                target=target,
                train_gradient=self.train_gradient_,
                batch_size=self.batch_size,
                verbose=self.verbose,
                memory_budget=self.memory_budget_,
                n_jobs=self.n_jobs,
            )
        return self._to_rows(S)

    @_in_budget
    def explain(self, X, y=None, *, k=5, target="loss"):
        """The ``k`` training rows that most support and most oppose each query.

        Streamed: the query gradients are solved once and the training
        gradients are walked in blocks (sized by ``memory_budget`` and
        ``batch_size``), keeping a running top-``k`` per query, so memory is
        ``O(n_query * k)`` plus one block and the ``(n_query, n_train_)``
        matrix of :meth:`influence` is never formed.

        Parameters
        ----------
        X : array-like of shape (n_query, n_features)
            Query inputs.
        y : array-like of shape (n_query,), default=None
            Query targets; required for ``target="loss"``.
        k : int, default=5
            Rows per side, at most the number of training rows.
        target : {"loss", "prediction"}, default="loss"
            What a row supports.  ``"loss"``: the query's label (its removal
            would raise the query's loss: ``influence(X, y)[j, i] > 0``).
            ``"prediction"``: the class the model predicts for the query
            (classifiers; for a regressor, a higher prediction): its removal
            would lower the predicted log-probability of that class, i.e.
            ``influence(X, target="prediction")[j, i] < 0``.

        Returns
        -------
        explanation : sklearn.utils.Bunch
            With arrays of shape ``(n_query, k)``:

            - ``helpful_indices``: rows of the ``X`` passed to ``fit``
              (``X_train[idx]``, ``df.iloc[idx]``) by decreasing support;
            - ``helpful_scores``: their support, ``S`` for ``"loss"`` and
              ``-S`` for ``"prediction"`` with ``S`` as in :meth:`influence`
              (removing the row moves ``f`` by about ``S / n_train_``);
            - ``harmful_indices``: the rows of least support (most opposing
              first);
            - ``harmful_scores``: their support, increasing;

            and ``target``.  Ties are broken by the lower row.  Rows a
            skorch ``train_split`` held out of training never appear.  A
            side lists ``k`` rows whatever their sign: the helpful side of a
            query that every row opposes has negative scores.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn.linear_model import LogisticRegression
        >>> from skinfluence import InfluenceScorer
        >>> X, y = load_digits(n_class=3, return_X_y=True)
        >>> scorer = InfluenceScorer(LogisticRegression(max_iter=2000))
        >>> scorer = scorer.fit(X[:300] / 16, y[:300])
        >>> why = scorer.explain(X[300:302] / 16, y[300:302], k=3)
        >>> why.helpful_indices.shape
        (2, 3)
        >>> bool((y[why.helpful_indices[0]] == y[300]).all())  # same digit
        True
        """
        self._check_query(X, y, target)
        n = len(self.train_indices_)
        if not (isinstance(k, Integral) and not isinstance(k, bool) and 1 <= k <= n):
            raise ValueError(
                f"k must be an integer between 1 and the number of training rows "
                f"({n}); got {k!r}. Ask for fewer rows."
            )
        top_i, top_v, low_i, low_v = top_influence(
            self.adapter_,
            self.curvature_,
            X,
            y,
            k=int(k),
            target=target,
            sign=1.0 if target == "loss" else -1.0,
            train_gradient=self.train_gradient_,
            batch_size=self.batch_size,
            verbose=self.verbose,
            memory_budget=self.memory_budget_,
            n_jobs=self.n_jobs,
        )
        rows = self.train_indices_
        return Bunch(
            helpful_indices=rows[top_i],
            helpful_scores=top_v,
            harmful_indices=rows[low_i],
            harmful_scores=low_v,
            target=target,
        )

    def _check_query(self, X, y, target):
        check_is_fitted(self)
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")
        # 1-D input is an error unless a Pipeline fitted on 1-D input (text)
        numeric = not self._wraps_pipeline() or hasattr(self, "n_features_in_")
        if numeric and _is_1d(X):
            check_array(X)  # raises the standard "Reshape your data" error
        validate_data(self, X, skip_check_array=True, reset=False)
        if y is not None:
            check_consistent_length(X, y)

    def _kwargs(self):
        return {"batch_size": self.batch_size, "verbose": self.verbose}

    def upweighting(self, X, y=None, *, target="loss"):
        """Effect of up-weighting each training point, per unit weight.

        Parameters
        ----------
        X : array-like of shape (n_query, n_features)
        y : array-like of shape (n_query,), default=None
            Required for ``target="loss"``.
        target : {"loss", "prediction"}, default="loss"

        Returns
        -------
        U : ndarray of shape (n_query, n_samples_fit_)
            ``d f_j / d eps`` when the objective gains ``eps * loss_i``:
            ``-grad f_j^T (H + damping I)^{-1} grad loss_i``.  Removal is
            ``eps = -1/n_train_``, so ``U = -influence(X, y)``.
        """
        return -self.influence(X, y, target=target)

    @_in_budget
    def input_perturbation(self, X, y=None, *, target="loss"):
        """Effect of shifting each training input, feature by feature.

        Parameters
        ----------
        X : array-like of shape (n_query, n_features)
        y : array-like of shape (n_query,), default=None
            Required for ``target="loss"``.
        target : {"loss", "prediction"}, default="loss"

        Returns
        -------
        R : ndarray of shape (n_query, n_samples_fit_, n_features)
            A shift ``delta`` of training input ``i`` changes ``f_j`` by about
            ``R[j, i] @ delta / n_train_``.  With ``target="loss"``, ``R[j, i]``
            is (``n_train_`` times) the gradient of query ``j``'s loss with
            respect to training input ``i``: move ``x_i`` along ``-R[j, i]``
            to help ``j``, along ``R[j, i]`` to hurt it.  Features are the
            wrapped model's inputs (continuous features; not available through
            a Pipeline's preprocessing).
        """
        self._check_query(X, y, target)
        R = input_perturbation(
            self.adapter_, self.curvature_, X, y, target=target, **self._kwargs()
        )
        return self._to_rows(R, axis=1)

    @_in_budget
    def label_change(self, X, y=None, *, target="loss"):
        """Effect of changing each training label to every class (classifiers).

        Parameters
        ----------
        X : array-like of shape (n_query, n_features)
        y : array-like of shape (n_query,), default=None
            Required for ``target="loss"``.
        target : {"loss", "prediction"}, default="loss"

        Returns
        -------
        R : ndarray of shape (n_query, n_samples_fit_, n_classes)
            Relabelling training point ``i`` to ``classes_[k]`` changes ``f_j``
            by about ``R[j, i, k] / n_train_``; 0 for its current label.
        """
        self._check_query(X, y, target)
        R = label_change(
            self.adapter_, self.curvature_, X, y, target=target, **self._kwargs()
        )
        return self._to_rows(R, axis=1)

    @_in_budget
    def group_influence(self, X, y, groups, *, target="loss", method="first_order"):
        """Effect of removing whole groups of training points.

        Parameters
        ----------
        X : array-like of shape (n_query, n_features)
        y : array-like of shape (n_query,) or None
            Required for ``target="loss"``.
        groups : array-like of shape (n_samples_fit_,)
            A group label per training point (as scikit-learn's ``groups``).
        target : {"loss", "prediction"}, default="loss"
        method : {"first_order", "newton"}, default="first_order"
            ``"first_order"``: the sum of the members' influence.
            ``"newton"``: one Newton step without the group, which includes the
            group's own curvature (second order in the group's size; linear
            models up to 5000 parameters, exact Hessian plus ``damping``).

        Returns
        -------
        R : ndarray of shape (n_query, n_groups)
            Removing group ``g`` (in ``np.unique(groups)`` order) changes
            ``f_j`` by about ``R[j, g] / n_train_``.
        """
        check_is_fitted(self)
        if method not in ("first_order", "newton"):
            raise ValueError(
                f"method must be 'first_order' or 'newton'; got {method!r}."
            )
        if method == "newton" and self.train_gradient_ == "total":
            raise ValueError(
                "method='newton' removes the group's losses at fixed hyper-"
                "parameters; it is not defined for train_gradient='total'."
            )
        groups = np.asarray(groups)
        if groups.shape != (self.n_samples_fit_,):
            raise ValueError(
                "groups must have one label per row of the X passed to fit "
                f"({self.n_samples_fit_},); got {groups.shape}."
            )
        if method == "newton":  # the step needs no first-order matrix
            self._check_query(X, y, target)
            S, Gq = None, query_grads(self.adapter_, X, y, target)
        else:
            S, Gq = self.influence(X, y, target=target)[:, self.train_indices_], None
        R_t, labels_t = group_influence(
            self.adapter_,
            self.curvature_,
            S,
            groups[self.train_indices_],
            method=method,
            Gq=Gq,
        )
        labels = np.unique(groups)
        if len(labels) == len(labels_t):
            return R_t
        R = np.zeros((len(R_t), len(labels)))  # groups never trained on: 0
        R[:, np.searchsorted(labels, labels_t)] = R_t
        return R

    @_in_budget
    def self_influence(self, *, target="loss", method="first_order"):
        """Self-influence of every training point, for the loss or the output.

        Parameters
        ----------
        target : {"loss", "prediction"}, default="loss"
        method : {"first_order", "newton"}, default="first_order"
            As :meth:`influence`.

        Returns
        -------
        s : ndarray of shape (n_samples_fit_,)
            ``"loss"``: ``self_influence_`` (first order).  ``"prediction"``:
            how much removing point ``i`` changes its own prediction, times
            ``n_train_`` (regression: ``y_hat_i``; classification: the
            log-probability of its predicted class).
        """
        check_is_fitted(self)
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")
        if _check_method(method) == "newton":
            return self._to_rows(
                newton_self_influence(
                    self.adapter_,
                    self.curvature_,
                    target=target,
                    train_gradient=self.train_gradient_,
                    batch_size=self.batch_size,
                    verbose=self.verbose,
                )
            )
        if target == "loss":
            return self.self_influence_
        if target != "prediction":
            raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")
        return self._to_rows(
            self_prediction_influence(
                self.adapter_,
                self.curvature_,
                train_gradient=self.train_gradient_,
                batch_size=self.batch_size,
            )
        )

    def __getattr__(self, name):
        # self_influence_ costs a pass over the training rows: computed on
        # first access and then stored, with its error.  A __getattr__ (not a
        # property) keeps it out of dir(), so notebook reprs and
        # inspect.getmembers do not trigger it.
        lazy = ("self_influence_", "self_influence_error_")
        if name not in lazy or "adapter_" not in self.__dict__:
            if name in lazy:
                check_is_fitted(self)
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            )
        with memory_budget_context(self.__dict__.get("memory_budget_")):
            value, method, error = self_influence_result(
                self.adapter_,
                self.curvature_,
                train_gradient=self.train_gradient_,
                batch_size=self.batch_size,
                verbose=self.verbose,
                method=self.__dict__.get("self_influence_method_"),
                memory_budget=self.__dict__.get("memory_budget_"),
                n_jobs=self.__dict__.get("n_jobs"),
                n_probes=self.__dict__.get("sketch_probes"),
                random_state=self.__dict__.get("random_state"),
            )
        self.__dict__["self_influence_"] = self._to_rows(value)
        self.__dict__["self_influence_method_"] = method
        self.__dict__["self_influence_error_"] = float(error)
        return self.__dict__[name]

    @_in_budget
    def parameter_change(self, indices, *, method="first_order"):
        """Predicted parameter shift when each listed training point is removed.

        Parameters
        ----------
        indices : array-like of int of shape (k,) or bool mask of shape \
(n_samples_fit_,)
            Training rows.
        method : {"first_order", "newton"}, default="first_order"
            As :meth:`influence`; ``"newton"`` is the exact leave-one-out
            change for least squares and ridge.

        Returns
        -------
        delta : ndarray of shape (k, n_params)
            ``theta_{-i} - theta ~= (H + damping I)^{-1} grad loss_i / n_train_``,
            in the adapter's layout (``[coef_, intercept_]`` row-major, one row
            per output).  For a multinomial model with an intercept, the
            component along the flat direction (the same shift of every
            intercept) is zero.
        """
        check_is_fitted(self)
        pos = self._trained_positions(indices)
        out = np.zeros((len(pos), self.adapter_.n_params))
        trained = pos >= 0  # a row the model never trained on: no change
        if _check_method(method) == "newton":
            out[trained] = newton_parameter_change(
                self.adapter_,
                self.curvature_,
                pos[trained],
                train_gradient=self.train_gradient_,
            )
        else:
            out[trained] = parameter_change(
                self.adapter_,
                self.curvature_,
                pos[trained],
                train_gradient=self.train_gradient_,
            )
        return out

    @_in_budget
    def diagnostics(self):
        """Regression diagnostics, one row per training row.

        The quantities statisticians know, on the penalised objective the
        model actually minimises: every closed-form scikit-learn model; for
        networks, the columns that need no scalar residual (leverage,
        Cook's distance, self-influence, dfbeta) from each row's Gauss-Newton
        block.  ``n`` rows, ``p = n_params`` parameters,
        ``h_i`` the leverage, ``r_i`` the Pearson residual (times
        ``sqrt(w_i)``), ``phi`` the dispersion (1 for binomial and Poisson
        models; else ``sum r^2 / (n - p)``) and ``phi_(i) = (sum r^2 -
        r_i^2 / (1 - h_i)) / (n - p - 1)`` its leave-one-out value.

        Returns
        -------
        table : pandas.DataFrame of shape (n_samples_fit_, 9 + n_params)
            Indexed like the ``X`` passed to ``fit`` (its index when it was a
            DataFrame, else ``train_indices_``).  Columns:

            - ``leverage``: ``h_i = tr(M_i J_i (H + damping I)^{-1} J_i^T) /
              n``, the diagonal of the (penalised) hat matrix: ``x_i^T (X^T
              X)^{-1} x_i`` for least squares, the hat matrix diagonal with
              the observed information for GLMs and logistic regression, the
              generalised leverage of the Gauss-Newton form for models with
              several outputs; with the chosen curvature backend.
            - ``residual``: the response residual ``y_i - mu_i``.
            - ``studentized_residual``: ``r_i / sqrt(phi (1 - h_i))``.
            - ``external_studentized_residual``: ``r_i / sqrt(phi_(i) (1 -
              h_i))`` (equal to the internal one when the dispersion is 1).
            - ``cooks_distance``: ``r_int^2 h_i / (p (1 - h_i))``; for models
              with several outputs ``n dtheta_i^T H dtheta_i / p``.
            - ``dffits``: ``r_ext sqrt(h_i / (1 - h_i))``.
            - ``cov_ratio``: ``(phi_(i) / phi)^p / (1 - h_i)``.
            - ``loo_residual``: ``y_i - mu_(i)`` after the Newton removal
              step: exact (PRESS) for least squares and ridge, where it
              equals ``RidgeCV``'s leave-one-out residuals; one-step otherwise.
            - ``self_influence``: ``self_influence_``.
            - ``dfbeta_<parameter>``: ``theta - theta_(i)`` by the Newton step
              (statsmodels' ``dfbeta`` / ``d_params`` sign; the opposite of
              :meth:`parameter_change` with ``method="newton"``).

            Columns that need a scalar residual are NaN for models with
            several outputs (multiclass, multi-target).

        Notes
        -----
        Unpenalised, these are statsmodels' ``OLSInfluence`` (least squares)
        and ``GLMInfluence`` (logistic, Poisson, Gamma, Tweedie) values; with
        a penalty they are the same formulas on the penalised hat matrix.
        One exception: for a GLM whose link is not canonical (Gamma or
        Tweedie with a log link), statsmodels' ``d_params`` is a Fisher-scoring
        step while ``dfbeta`` here is the Newton step on the observed Hessian
        (the one that predicts an actual refit).

        References
        ----------
        Cook, R. D. and Weisberg, S. "Residuals and Influence in Regression."
        Chapman & Hall, 1982.  Pregibon, D. "Logistic Regression Diagnostics."
        Annals of Statistics 9(4), 1981.

        Examples
        --------
        >>> from sklearn.datasets import load_diabetes
        >>> from sklearn.linear_model import LinearRegression
        >>> from skinfluence import InfluenceScorer
        >>> X, y = load_diabetes(return_X_y=True, as_frame=True)
        >>> table = InfluenceScorer(LinearRegression()).fit(X, y).diagnostics()
        >>> table[["leverage", "cooks_distance"]].shape
        (442, 2)
        >>> bool(abs(table["leverage"].sum() - 11) < 1e-8)  # trace of the hat matrix
        True
        """
        check_is_fitted(self)
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a dev extra
            raise ImportError(
                "diagnostics() returns a pandas DataFrame: pip install pandas."
            ) from exc
        cols = regression_diagnostics(
            self.adapter_,
            self.curvature_,
            train_gradient=self.train_gradient_,
            batch_size=self.batch_size,
            verbose=self.verbose,
        )
        dfbeta = cols.pop("dfbeta")
        cols["self_influence"] = self.self_influence_[self.train_indices_]
        order = [
            "leverage",
            "residual",
            "studentized_residual",
            "external_studentized_residual",
            "cooks_distance",
            "dffits",
            "cov_ratio",
            "loo_residual",
            "self_influence",
        ]
        table = pd.DataFrame({k: cols[k] for k in order})
        names = self._parameter_names()
        table = pd.concat(
            [table, pd.DataFrame(dfbeta, columns=[f"dfbeta_{n}" for n in names])],
            axis=1,
        )
        table.index = self.train_indices_
        if len(table) != self.n_samples_fit_:  # rows held out of training
            table = table.reindex(np.arange(self.n_samples_fit_))
            held_out = ~np.isin(table.index, self.train_indices_)
            zero = ["self_influence", *[c for c in table if c.startswith("dfbeta_")]]
            table.loc[held_out, zero] = 0.0
        if self._train_index is not None:
            table.index = self._train_index
        return table

    def _parameter_names(self):
        adapter = self.adapter_
        features = getattr(self, "feature_names_in_", None)
        model = self.estimator_
        if isinstance(model, FrozenEstimator):
            model = model.estimator
        if isinstance(model, Pipeline) and len(model) > 1:
            try:  # the names after the fixed preprocessing
                features = model[:-1].get_feature_names_out()
            except (AttributeError, ValueError, TypeError):
                features = None
        if not isinstance(adapter, NamedParameters):
            return [str(j) for j in range(adapter.n_params)]
        return adapter.parameter_names(features)

    def transform(self, X):
        """Label-free prediction influence, ``influence(X, target="prediction")``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        S : ndarray of shape (n_samples, n_samples_fit_)
            Memory grows as ``n_samples * n_train_``.
        """
        return self.influence(X, None, target="prediction")

    def get_feature_names_out(self, input_features=None):
        """Names of the :meth:`transform` columns: ``influence_train<i>``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        names : ndarray of str of shape (n_samples_fit_,)
        """
        check_is_fitted(self)
        return np.asarray(
            [f"influence_train{i}" for i in range(self.n_samples_fit_)], dtype=object
        )

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """The wrapped model's ``predict``."""
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """The wrapped model's ``predict_proba``."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """The wrapped model's ``predict_log_proba``."""
        check_is_fitted(self)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """The wrapped model's ``decision_function``."""
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    @available_if(_estimator_has("score"))
    def score(self, X, y):
        """The wrapped model's ``score`` (accuracy or R^2), nothing invented.

        It does not depend on ``curvature`` or ``damping`` (they change the
        influence scores, not the model), so ``GridSearchCV`` over them with
        the default scoring ties every candidate and keeps the first.  Rank
        them by fidelity to actual leave-one-out retraining instead: pass
        ``scoring=make_loo_scorer(...)``
        (:func:`~skinfluence.evaluation.make_loo_scorer`, a few refits per
        fold).  ``score`` stays the model's own, so that this
        estimator remains the classifier or regressor it wraps (in a
        ``Pipeline``, ``cross_val_score`` or a search over the model's own
        parameters) and a plain ``score`` call costs no refits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        score : float

        Examples
        --------
        >>> from sklearn.datasets import load_breast_cancer
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklearn.model_selection import GridSearchCV
        >>> from sklearn.preprocessing import StandardScaler
        >>> from skinfluence import InfluenceScorer
        >>> from skinfluence.evaluation import make_loo_scorer
        >>> X, y = load_breast_cancer(return_X_y=True)
        >>> X, y = StandardScaler().fit_transform(X)[:200], y[:200]
        >>> search = GridSearchCV(
        ...     InfluenceScorer(LogisticRegression(tol=1e-10, max_iter=10_000)),
        ...     {"damping": [1e3, 1e-2]},
        ...     scoring=make_loo_scorer(10, n_queries=2, random_state=0),
        ...     cv=2,
        ... ).fit(X, y)
        >>> search.best_params_  # large damping loses fidelity to retraining
        {'damping': 0.01}
        """
        check_is_fitted(self)
        return self.estimator_.score(X, y)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self._get_estimator()
        # FrozenEstimator's tags are its model's, deep-copied on every call;
        # asking the model directly gives the same fields without the copy.
        if isinstance(inner, FrozenEstimator):
            inner = inner.estimator
        inner = get_tags(inner)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])
        tags.target_tags.required = True
        tags.non_deterministic = _is_stochastic(self.curvature)
        tags.target_tags.multi_output = inner.target_tags.multi_output
        tags.target_tags.single_output = inner.target_tags.single_output
        return tags
