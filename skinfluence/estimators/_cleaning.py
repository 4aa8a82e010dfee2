"""Noisy-label detection, relabeling and clean-then-refit meta-estimators."""

from __future__ import annotations

import functools
import warnings
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    clone,
    is_regressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array, check_consistent_length, column_or_1d, get_tags
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    process_routing,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, has_fit_parameter, validate_data

from ..curvature import CURVATURES, make_curvature
from ..exceptions import NotAtOptimumWarning
from ..influence import (
    influence_on_mean_loss,
    label_change_on_mean_loss,
    mean_loss_solution,
    stationarity,
    tracin_self_influence,
    validation_minimum_label_scores,
    validation_minimum_scores,
)
from ..models import Finetuner, encode_labels
from ..utils._chunks import memory_budget_context, parse_memory_budget
from ..utils._sklearn_compat import (
    HasMethods,
    Interval,
    StrOptions,
    _fit_context,
    _num_samples,
    _raise_for_params,
    _routing_enabled,
    _safe_indexing,
)
from ._defaults import _ReachableDefaults
from ._influence_scorer import (
    InfluenceScorer,
    _accepts_memory_budget,
    _check_sample_weight,
    _fit_weighted,
)

_COMMON = {
    "estimator": [HasMethods(["fit"]), None],
    "curvature": [StrOptions({"auto", *CURVATURES}), HasMethods(["fit", "solve"])],
    "damping": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "finetune": [HasMethods(["run"]), None],
    "dtype": [StrOptions({"float64", "float32"}), None],
    "device": "no_validation",  # str or torch.device: checked by the adapter
    "memory_budget": [Interval(Integral, 1, None, closed="left"), str, None],
    "n_jobs": [
        Interval(Integral, None, -1, closed="right"),
        Interval(Integral, 1, None, closed="left"),
        None,
    ],
    "refit": ["boolean"],
}


def _within_budget(fit):
    """Run a cleaner's ``fit`` inside its memory budget, so the influence code
    it calls beyond its scorer (validation influence, VM/FVM) honours it."""

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        with memory_budget_context(parse_memory_budget(self.memory_budget)):
            return fit(self, *args, **kwargs)

    return wrapper


#: Methods that never use the curvature of the training objective (nor assume
#: the model sits at its optimum).
_NO_TRAIN_CURVATURE = frozenset({"loss", "tracin", "vm", "fvm"})


def _row_indexable(X):
    """``X`` in a container whose rows can be taken, changed only if need be.

    Sparse formats become CSR (COO/DIA/BSR cannot be indexed by rows) and an
    array-like without indexing (only ``__array__``) becomes an ndarray;
    DataFrames, lists of documents and arrays pass unchanged.
    """
    if sparse.issparse(X):
        return X.tocsr()
    if not hasattr(X, "__getitem__") and hasattr(X, "__array__"):
        return np.asarray(X)
    return X


def _tukey_threshold(scores: np.ndarray) -> float:
    """Q3 + 1.5 IQR: the classic outlier fence, the documented "auto" rule."""
    q1, q3 = np.percentile(scores, [25, 75])
    return float(q3 + 1.5 * (q3 - q1))


def _weights(sample_weight, X):
    """Validated weights, or ones when none are given."""
    if sample_weight is None:
        return np.ones(_num_samples(X))
    return _check_sample_weight(sample_weight, X)


class _InfluenceCleaner(_ReachableDefaults, BaseEstimator):
    """Shared plumbing: fit an InfluenceScorer, score, then resample."""

    def _defaults(self):
        return {"estimator": LogisticRegression, "finetune": Finetuner}

    def _estimator(self):
        return LogisticRegression() if self.estimator is None else self.estimator

    def _fit_scorer(self, X, y, sample_weight):
        # a refit must not keep the last fit's VM/FVM state or feature info
        for stale in (
            "finetune_info_",
            "validation_curvature_",
            "_validation_adapter",
            "_validation_solution",
            "cleaned_estimator_",
            "n_features_in_",
            "feature_names_in_",
        ):
            self.__dict__.pop(stale, None)
        estimator = self._estimator()
        free = self.method_ in _NO_TRAIN_CURVATURE
        scorer = InfluenceScorer(
            estimator,
            curvature="identity" if free else self.curvature,
            damping=0.0 if free else self.damping,
            random_state=self.random_state,
            verbose=self.verbose,
            dtype=self.dtype,
            device=self.device,
            memory_budget=self.memory_budget,
            n_jobs=self.n_jobs,
        )
        with warnings.catch_warnings():
            if free:
                warnings.simplefilter("ignore", NotAtOptimumWarning)
            self.scorer_ = scorer.fit(X, y, sample_weight=sample_weight)
        if len(scorer.train_indices_) != _num_samples(X):
            raise ValueError(
                f"The model trained on {len(scorer.train_indices_)} of the "
                f"{_num_samples(X)} rows (a skorch train_split holds rows out), "
                "so not every label can be scored; set train_split=None on the net "
                "for cleaning."
            )
        # a text pipeline's list of strings has no feature count
        for name in ("n_features_in_", "feature_names_in_", "classes_"):
            if hasattr(scorer, name):
                setattr(self, name, getattr(scorer, name))
        return self.scorer_

    def _validation_set(self, X, y, X_val, y_val):
        if (X_val is None) != (y_val is None):
            raise ValueError("Pass both X_val and y_val, or neither.")
        if X_val is None:
            return X, y
        check_consistent_length(X_val, y_val)
        validate_data(self.scorer_, X_val, skip_check_array=True, reset=False)
        return X_val, y_val

    def _validation_minimum(self, X, y, X_val, y_val):
        """Fine-tune on the validation set; fit its curvature there (VM/FVM)."""
        if X_val is None or y_val is None:
            raise ValueError(
                f"method={self.method_!r} needs a trusted validation set: pass "
                "X_val and y_val to fit (routed as metadata inside a "
                "CleanedClassifier)."
            )
        Xv, yv = self._validation_set(X, y, X_val, y_val)
        finetuner = clone(self.finetune) if self.finetune is not None else Finetuner()
        adapter, info = finetuner.run(
            self.scorer_.adapter_,
            Xv,
            np.asarray(yv),
            flat=self.method_ == "fvm",
            random_state=self.random_state,
            verbose=self.verbose,
        )
        # the validation Hessian at a fine-tuned point can be indefinite: "auto"
        # takes the Gauss-Newton matrix, the paper's PSD stand-in
        budget = self.scorer_.memory_budget_
        backend = make_curvature(
            self.curvature,
            adapter,
            random_state=self.random_state,
            gauss_newton=True,
            memory_budget=budget,
        )
        extra = {"memory_budget": budget} if _accepts_memory_budget(backend) else {}
        backend.fit(adapter, damping=self.damping, verbose=self.verbose, **extra)
        grad_norm, scale = stationarity(
            adapter, memory_budget=budget, n_jobs=self.n_jobs
        )
        if grad_norm > 0.1 * scale:
            warnings.warn(
                f"Fine-tuning stopped short of a validation minimum (||grad J_val|| = "
                f"{grad_norm:.3g} vs a per-sample gradient scale of {scale:.3g}); the "
                "VM/FVM score assumes one. Raise the finetuner's n_steps or lr.",
                NotAtOptimumWarning,
                stacklevel=3,
            )
        self.finetune_info_ = info
        self.validation_curvature_ = backend
        self._validation_adapter = adapter
        return adapter, backend

    def _fit_cleaned_estimator(self, X, y, sample_weight):
        """``cleaned_estimator_``: a clone of the model refitted on the cleaned
        rows (``sample_indices_``, labels ``_resampled_y``), weights following."""
        if not self.refit:
            return
        keep = self.sample_indices_
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)[keep]
        self.cleaned_estimator_ = _fit_weighted(
            clone(self._estimator()),
            _safe_indexing(X, keep),
            self._resampled_y(y),
            sample_weight,
        )

    def score(self, X, y, sample_weight=None):
        """The model's own score on ``(X, y)`` after training on the cleaned rows.

        ``cleaned_estimator_`` (a clone of ``estimator`` refitted at ``fit`` on
        what ``fit_resample`` returns: the unflagged rows for a detector,
        every row with its suggested label for a relabeler) scores held-out
        data, so ``GridSearchCV`` over ``contamination``, ``method`` or
        ``damping`` picks the cleaning that helps unseen data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Held-out rows, as the model takes them.
        y : array-like of shape (n_samples,)
            Their (trusted) labels or targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to the model's ``score`` when given.

        Returns
        -------
        score : float
            Accuracy for classifiers, R^2 for regressors (the model's
            ``score``), higher is better.
        """
        check_is_fitted(self)
        if not hasattr(self, "cleaned_estimator_"):
            raise ValueError(
                f"{type(self).__name__} was fitted with refit=False, so no model "
                "was trained on the cleaned rows to score; set refit=True (the "
                "default) and fit again."
            )
        extra = {} if sample_weight is None else {"sample_weight": sample_weight}
        return self.cleaned_estimator_.score(X, y, **extra)

    def score_samples(self, X, y):
        """How normal each labelled row looks to the fitted cleaner.

        The negated suspicion of ``method_`` computed for the given rows
        under the fitted model (no refit): higher = more normal, lower = more
        likely mislabelled, the orientation of scikit-learn's outlier
        detectors.  The rows are scored as fresh rows of unit weight, so on
        the (unweighted) training rows it is ``-scores_``
        (:class:`NoisyLabelDetector`) or ``-suspicion_``
        (:class:`Relabeler`), up to the error of a sketched self-influence
        (``scorer_.self_influence_method_ == "sketch"``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A fresh batch, as the model takes it.
        y : array-like of shape (n_samples,)
            Its labels (targets for a regressor), the thing being rated: a
            row has no suspicion without one.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if y is None:
            raise ValueError(
                f"{type(self).__name__}.score_samples rates labelled rows (how "
                "likely the label is wrong), so it needs y; pass the labels."
            )
        X = _row_indexable(X)
        # the feature count and names must be the fit's
        validate_data(self.scorer_, X, skip_check_array=True, reset=False)
        y = np.asarray(y)
        check_consistent_length(X, y)
        with memory_budget_context(self.scorer_.memory_budget_):
            return -np.asarray(self._suspicion(X, y), dtype=float)

    def _self_influence_of(self, X, y):
        """``g^T (H + damping I)^{-1} g`` of the given rows at the fitted model."""
        scorer = self.scorer_
        # the quadratic form of each row's loss gradient, the training
        # objective's curvature and adapter standing in for the validation one
        return validation_minimum_scores(
            scorer.adapter_, scorer.curvature_, X, y, verbose=self.verbose
        )

    def _validation_minimum_of(self, X, y):
        """The VM/FVM score of the given rows at the validation minimum."""
        return validation_minimum_scores(
            self._validation_adapter,
            self.validation_curvature_,
            X,
            y,
            verbose=self.verbose,
        )

    def fit_resample(self, X, y, sample_weight=None, **fit_params):
        """Fit, then return the cleaned training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            As the model takes it (a ``DataFrame``, a list of documents for a
            text pipeline, a sparse matrix): the kept rows come back in the
            same container (sparse formats without row indexing as CSR).
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.
        **fit_params : dict
            ``X_val``, ``y_val``: a trusted validation set.

        Returns
        -------
        X_resampled, y_resampled
            The kept rows (detectors) or every row with suggested labels
            (relabelers); ``sample_indices_`` says which rows (use it to
            slice ``sample_weight``).
        """
        X = _row_indexable(X)
        self.fit(X, y, sample_weight=sample_weight, **fit_params)
        return _safe_indexing(X, self.sample_indices_), self._resampled_y(y)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        inner = get_tags(
            LogisticRegression() if self.estimator is None else self.estimator
        )
        tags.input_tags.sparse = inner.input_tags.sparse
        return tags


class NoisyLabelDetector(_InfluenceCleaner):
    """Rank training points by how likely their label is wrong, and flag them.

    Parameters
    ----------
    estimator : estimator object, default=None
        The model whose influence is measured (any model
        :class:`~skinfluence.InfluenceScorer` supports); ``None`` means
        ``LogisticRegression()``.  Defaults left as ``None`` (``estimator``,
        ``finetune``) are reachable by ``set_params``/``GridSearchCV``:
        ``estimator__C`` puts the default in place of ``None`` first.
    method : {"self_influence", "loss", "validation_influence", "tracin", \
            "vm", "fvm"}, default="self_influence"
        ``"self_influence"``: ``g_i^T (H + damping I)^{-1} g_i`` (Koh & Liang's
        detector); ``"loss"``: the training loss (the baseline);
        ``"validation_influence"``: harm to the mean loss of the trusted
        validation set ``(X_val, y_val)`` -- how much removing the point would
        lower it.  It needs ``X_val`` and ``y_val``: without them ``fit``
        raises ``ValueError`` (the training set standing in ranks its own
        flipped labels no better than chance);
        ``"tracin"``: TracIn's self-influence ``sum_k lr_k ||g_i(theta_k)||^2``
        over checkpoints saved during training (skorch nets fitted with the
        :class:`~skinfluence.TracInCheckpoints` callback); ``"vm"`` and
        ``"fvm"`` (Ye et al. 2025): fine-tune the model on ``(X_val, y_val)``
        from its fitted parameters (plain SGD for VM, a flat minimum by
        LPF-SGD or SAM for FVM; see ``finetune``), then score
        ``g~_i^T (H~_val + damping I)^{-1} g~_i`` at that minimum, with
        ``H~_val`` the chosen curvature of the validation objective.
    curvature : str or CurvatureBackend, default="auto"
        As :class:`~skinfluence.InfluenceScorer`; for ``"vm"``/``"fvm"`` it is
        the curvature of the validation objective, and ``"auto"`` means the
        Gauss-Newton matrix (``"ggn"``, or CG on Gauss-Newton products for
        large models): the Hessian at a fine-tuned point can be indefinite.
        Unused by ``"loss"`` and ``"tracin"``.
    damping : float or "auto", default=0.0
        As :class:`~skinfluence.InfluenceScorer`.  For ``"vm"``/``"fvm"`` on a
        network without weight decay the validation Gauss-Newton matrix is
        singular (rank at most ``n_val * (n_classes - 1)``): use ``"auto"`` or a
        positive value.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Share of points flagged.  ``"auto"``: points whose score exceeds
        Tukey's fence ``Q3 + 1.5 IQR`` of the scores.
    finetune : Finetuner or None, default=None
        How ``"vm"``/``"fvm"`` find the validation minimum; ``None`` means
        ``Finetuner()`` (2000 SGD steps, lr 0.01, momentum 0.9, batch 64,
        LPF-SGD radius 5e-2 for FVM).  Its settings are assumptions (the
        paper does not give them): tune them, e.g. pass
        ``finetune=Finetuner()`` and search ``finetune__radius``.  The
        fine-tuned objective is the model's own on the validation set: for
        scikit-learn models the L2 term keeps ``C``/``alpha`` per sample sum
        (so it is ``n_train / n_val`` times stronger on the mean scale), for
        torch nets weight decay keeps its mean-loss scale.
    refit : bool, default=True
        Also fit a clone of ``estimator`` on the kept rows at ``fit``
        (``cleaned_estimator_``), which :meth:`score` needs; ``False`` saves
        that fit (a :class:`~skinfluence.CleanedClassifier` does its own).
        A ``FrozenEstimator`` is not refitted by it, so its score ignores the
        cleaning.
    random_state, verbose
        As :class:`~skinfluence.InfluenceScorer`; ``random_state`` also seeds
        the fine-tuning.
    dtype, device
        As :class:`~skinfluence.InfluenceScorer` (networks only).
    memory_budget : int, str or None, default=None
        As :class:`~skinfluence.InfluenceScorer`: bytes (or ``"2GB"``,
        ``"512MiB"``) any one block or dense curvature may take; passed to
        the scorer and to the validation curvature of ``"vm"``/``"fvm"``.
    n_jobs : int or None, default=None
        Workers for the scorer's row blocks (``joblib``); results equal the
        sequential ones.

    Attributes
    ----------
    method_ : str
        The method used (``method``).
    scores_ : ndarray of shape (n_samples,)
        Higher = more suspicious.
    ranking_ : ndarray of shape (n_samples,)
        Indices by decreasing suspicion.
    threshold_ : float
        Points with ``scores_ > threshold_`` are flagged.
    noisy_mask_ : ndarray of bool of shape (n_samples,)
    sample_indices_ : ndarray of shape (n_kept,)
        The unflagged rows, as ``fit_resample`` returns them.
    scorer_ : InfluenceScorer
        The fitted scorer (its ``estimator_`` is the fitted model).  For the
        methods that do not use the training curvature (``"loss"``,
        ``"tracin"``, ``"vm"``, ``"fvm"``) its curvature is ``"identity"``.
    finetune_info_ : dict
        ``"vm"``/``"fvm"`` only: the mean validation loss before and after
        fine-tuning and the final gradient norm of the validation objective.
    validation_curvature_ : CurvatureBackend
        ``"vm"``/``"fvm"`` only: the curvature fitted at the validation minimum.
    cleaned_estimator_ : estimator
        ``refit=True`` only: a clone of ``estimator`` fitted on the kept rows
        (with their weights); :meth:`score` is its score.
    classes_ : ndarray (classifiers)
    n_features_in_ : int

    Notes
    -----
    ``fit_predict`` returns -1 for flagged points and +1 otherwise, as outlier
    detectors do, but this is not an outlier detector: it needs ``y``.
    :meth:`score_samples` likewise takes ``y`` and has the outlier
    detectors' orientation (higher = more normal, ``-scores_`` on the
    training rows), and :meth:`score` is the model's held-out score after
    training on the kept rows, so ``GridSearchCV`` over ``contamination``,
    ``method`` or ``damping`` ranks the cleanings by what they do to unseen
    data.

    There is no ``transform``: cleaning drops training rows, which a
    ``Pipeline`` transformer cannot do (it must return one row per input,
    and it would also be applied at prediction time, to unlabelled rows).
    Clean inside :class:`~skinfluence.CleanedClassifier` (or an
    imbalanced-learn pipeline, through ``fit_resample``); per-row scores of
    new labelled rows come from :meth:`score_samples`.

    **Sample weights.**  With ``sample_weight`` the model is fitted to the
    weighted objective ``(1/n) sum_i w_i loss_i + penalty`` and every score is
    that of row ``i`` as it enters that objective, through its term
    ``w_i loss_i``, so each still speaks of removing the row from the
    *weighted* refit:

    - ``"self_influence"``: ``(w_i g_i)^T (H_w + damping I)^{-1} (w_i g_i)``
      with ``H_w`` the weighted Hessian: ``n`` times the predicted rise of
      ``w_i loss_i`` when row ``i`` leaves the weighted refit;
    - ``"validation_influence"``: the predicted harm of that removal to the
      mean validation loss (the row's gradient is ``w_i g_i``);
    - ``"loss"``: ``w_i loss_i``, what removing the row takes out of the
      weighted training loss at the fitted parameters;
    - ``"vm"``/``"fvm"``: ``w_i^2 g~_i^T (H~_val + damping I)^{-1} g~_i``:
      fine-tuning starts from the weighted fit and the row's gradient is
      ``w_i g~_i`` (the validation set is unweighted);
    - ``"tracin"``: networks do not take weights yet.

    So a row of integer weight ``k`` scores as its ``k`` copies together in
    the fit on repeated rows: their summed loss (``"loss"``), the quadratic
    form of their summed gradient (``"vm"``/``"fvm"``), and for the two
    influence methods the same times ``n / sum(w)``, the ratio of the
    ``1/n`` mean-loss scales of the two fits.  A row of zero weight is not in
    the fit: it scores 0, is never flagged, and ``contamination`` and the
    ``"auto"`` fence count only rows of positive weight.  With
    ``damping=0`` zero weight therefore flags exactly what leaving the row
    out does (the influence scores of the other rows change by one common
    factor, which moves neither the ranking nor the fence).
    ``class_weight`` enters the influence methods (it weighs the gradients)
    but not ``"loss"`` nor ``"vm"``/``"fvm"``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skinfluence import NoisyLabelDetector
    >>> from skinfluence.datasets import inject_label_noise
    >>> from skinfluence.evaluation import detection_report
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> y_noisy, flipped = inject_label_noise(y, 0.1, random_state=0)
    >>> model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1))
    >>> detector = NoisyLabelDetector(model).fit(X, y_noisy)
    >>> suspects = detector.ranking_[:20]  # rows of X, most suspicious first
    >>> bool(flipped[suspects].mean() > 0.8)  # most of them were flipped
    True
    >>> bool(detection_report(flipped, detector.scores_)["roc_auc"] > 0.95)
    True
    >>> sorted(set(detector.fit_predict(X, y_noisy).tolist()))  # -1: flagged
    [-1, 1]

    Tune the share dropped by the model's accuracy on held-out folds
    (:meth:`score`: the model refitted on the kept rows):

    >>> from sklearn.model_selection import GridSearchCV
    >>> search = GridSearchCV(
    ...     NoisyLabelDetector(model), {"contamination": [0.02, 0.1]}, cv=2
    ... ).fit(X, y_noisy)
    >>> search.best_params_
    {'contamination': 0.1}
    >>> normality = detector.score_samples(X[:5], y_noisy[:5])  # higher: normal
    >>> bool(np.allclose(normality, -detector.scores_[:5]))
    True
    """

    _parameter_constraints: dict = {
        **_COMMON,
        "method": [
            StrOptions(
                {"self_influence", "loss", "validation_influence", "tracin"}
                | {"vm", "fvm"}
            )
        ],
        "contamination": [
            StrOptions({"auto"}),
            Interval(Real, 0, 0.5, closed="right"),
        ],
    }

    def __init__(
        self,
        estimator=None,
        *,
        method="self_influence",
        curvature="auto",
        damping=0.0,
        contamination="auto",
        finetune=None,
        refit=True,
        random_state=None,
        verbose=0,
        dtype=None,
        device=None,
        memory_budget=None,
        n_jobs=None,
    ):
        self.memory_budget = memory_budget
        self.n_jobs = n_jobs
        self.estimator = estimator
        self.method = method
        self.curvature = curvature
        self.damping = damping
        self.contamination = contamination
        self.finetune = finetune
        self.refit = refit
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device

    @_fit_context(prefer_skip_nested_validation=False)
    @_within_budget
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        """Score every training point and flag the suspicious ones.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            As the model takes it: a ``DataFrame`` for a ``ColumnTransformer``
            that selects columns by name, a list of documents for a text
            pipeline, a sparse matrix.  It reaches the model unchanged.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative per-row weights: the model is fitted with them and
            the scores are those of the weighted fit (see Notes).
        X_val, y_val : array-like, default=None
            A trusted (clean) validation set: required by ``method="vm"`` and
            ``"fvm"``, used by ``"validation_influence"``.

        Returns
        -------
        self : NoisyLabelDetector
        """
        X, y = _row_indexable(X), _row_indexable(y)
        w = _weights(sample_weight, X)
        self.method_ = self.method
        scorer = self._fit_scorer(X, y, sample_weight)
        a, backend = scorer.adapter_, scorer.curvature_
        if self.method == "self_influence":
            scores = scorer.self_influence_
        elif self.method == "loss":
            scores = w * a.loss(X, y)
        elif self.method == "tracin":
            scores = tracin_self_influence(a, verbose=self.verbose)
        elif self.method in ("vm", "fvm"):
            a_val, b_val = self._validation_minimum(X, y, X_val, y_val)
            scores = w**2 * validation_minimum_scores(
                a_val, b_val, X, np.asarray(y), verbose=self.verbose
            )
        else:
            if X_val is None and y_val is None:
                raise ValueError(
                    "method='validation_influence' needs a trusted validation set: "
                    "pass X_val and y_val to fit (on the training set itself it "
                    "ranks flipped labels no better than chance), or use "
                    "method='self_influence'."
                )
            Xv, yv = self._validation_set(X, y, X_val, y_val)
            self._validation_solution = mean_loss_solution(a, backend, Xv, yv)
            scores = -influence_on_mean_loss(
                a, backend, Xv, yv, solution=self._validation_solution
            )
        self.scores_ = np.asarray(scores, dtype=float)
        self.ranking_ = np.argsort(-self.scores_, kind="stable")
        # a row of zero weight is not in the fit: never flagged, not counted
        fitted = w > 0
        if self.contamination == "auto":
            self.threshold_ = _tukey_threshold(self.scores_[fitted])
            self.noisy_mask_ = (self.scores_ > self.threshold_) & fitted
        else:
            order = self.ranking_[fitted[self.ranking_]]
            k = int(round(self.contamination * len(order)))
            self.noisy_mask_ = np.zeros(len(self.scores_), dtype=bool)
            self.noisy_mask_[order[:k]] = True
            self.threshold_ = float(self.scores_[order[k - 1]]) if k else float("inf")
        self.sample_indices_ = np.flatnonzero(~self.noisy_mask_)
        self._fit_cleaned_estimator(X, y, sample_weight)
        return self

    def _suspicion(self, X, y):
        """``scores_``'s definition for the given rows (unit weight)."""
        a = self.scorer_.adapter_
        if self.method_ == "self_influence":
            return self._self_influence_of(X, y)
        if self.method_ == "loss":
            return a.loss(X, y)
        if self.method_ == "tracin":
            return tracin_self_influence(a, X, y, verbose=self.verbose)
        if self.method_ in ("vm", "fvm"):
            return self._validation_minimum_of(X, y)
        return -influence_on_mean_loss(
            a,
            self.scorer_.curvature_,
            None,
            None,
            solution=self._validation_solution,
            rows=(X, y),
        )

    def fit_predict(self, X, y, sample_weight=None, **fit_params):
        """-1 for flagged points, +1 for the rest.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.
        **fit_params : dict
            ``X_val``, ``y_val``.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        self.fit(X, y, sample_weight=sample_weight, **fit_params)
        return np.where(self.noisy_mask_, -1, 1)

    def _resampled_y(self, y):
        return _safe_indexing(y, self.sample_indices_)


class Relabeler(_InfluenceCleaner):
    """Suggest corrected labels: the change that most lowers a validation loss.

    ``method="auto"`` (the default) is ``"fvm"`` and needs a trusted
    validation set ``(X_val, y_val)``: on ``benchmarks/noisy_labels.py``
    (digits, 20-40 % flipped) it put the true label back on more flipped
    digits than ``"vm"`` and far more than label-change influence, and its
    labels gave the best test accuracy (see Notes).  Without a validation
    set ``"auto"`` refuses (``ValueError``); pass
    ``method="label_influence"`` to relabel without one.

    ``method="label_influence"``: for every training point and every
    alternative class, label-change influence predicts the change of the mean
    loss on the trusted validation set ``(X_val, y_val)``.  Without one the
    training set stands in, which is much weaker (it lowered test accuracy
    in a measured case), so ``fit`` warns (``UserWarning``): pass a clean
    validation set.  The suspects are the ``max_fraction`` most self-influential points;
    each is relabelled to its best alternative if that is predicted to lower
    the validation loss (gain > 0).

    ``method="vm"``/``"fvm"`` (Ye et al. 2025): at the validation minimum found
    as in :class:`NoisyLabelDetector`, every candidate label ``c`` of a point
    gets the score ``g~_(x,c)^T (H~_val + damping I)^{-1} g~_(x,c)``; the
    suggested label is the one with the lowest score (the current label
    included), the suspects are the ``max_fraction`` points with the highest
    score for their given label, and a suspect is relabelled when its
    suggestion differs from its label.

    The cap exists because a suggested label is a prediction, not a fact.

    Parameters
    ----------
    estimator : classifier, default=None
        ``None`` means ``LogisticRegression()``.
    method : {"auto", "label_influence", "vm", "fvm"}, default="auto"
        ``"auto"``: ``"fvm"``, which needs ``X_val``/``y_val`` (``fit``
        raises ``ValueError`` without them, naming the alternative);
        ``method_`` records the method used.
    curvature, damping, finetune, refit, random_state, verbose, dtype, device
        As :class:`NoisyLabelDetector` (``refit``: the relabelled training
        set is what ``cleaned_estimator_`` is fitted on).
    memory_budget, n_jobs
        As :class:`NoisyLabelDetector`.
    max_fraction : float in (0, 1], default=0.1
        Most points relabelled.

    Attributes
    ----------
    method_ : str
        The method used: ``method``, or ``"fvm"`` for ``"auto"``.
    y_relabeled_ : ndarray of shape (n_samples,)
    relabeled_mask_ : ndarray of bool of shape (n_samples,)
    relabel_gain_ : ndarray of shape (n_samples,)
        ``"label_influence"``: predicted decrease of the mean validation loss
        from the best label change of each point (times ``n_samples``; <= 0:
        no better label).  ``"vm"``/``"fvm"``: the decrease of the score from
        the given label to the suggested one (0: the given label is best).
    suggested_labels_ : ndarray of shape (n_samples,)
        The best label of every point (its own when no change helps).
    suspicion_ : ndarray of shape (n_samples,)
        The ranking that picks the suspects: self-influence, or the VM/FVM
        score of the given label.
    sample_indices_ : ndarray of shape (n_samples,)
        All rows (a relabeler keeps every row).
    scorer_ : InfluenceScorer
    finetune_info_, validation_curvature_
        ``"vm"``/``"fvm"`` only, as :class:`NoisyLabelDetector`.
    cleaned_estimator_ : classifier
        ``refit=True`` only: a clone of ``estimator`` fitted on every row
        with ``y_relabeled_``; :meth:`score` is its score.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Notes
    -----
    Why ``"fvm"`` is the default: ``benchmarks/noisy_labels.py
    --relabel-only`` (digits, 60/20/20 split, 20 % and 40 % symmetric flips,
    the same trusted validation set for every method, ``max_fraction=0.5``)
    measured the share of flipped digits whose suggested label is the true
    one, and the test accuracy of the model refitted on the relabelled set
    (:meth:`score`; the model fitted on the noisy labels in brackets):

    ==========================  ===========  ===========  ===========  ===========
    model, flips                label_infl.  vm           fvm          test acc.
    ==========================  ===========  ===========  ===========  ===========
    logistic regression, 20 %   0.62 / .822  0.97 / .942  0.98 / .950  (.928)
    logistic regression, 40 %   0.70 / .875  0.96 / .939  0.96 / .950  (.917)
    memorising MLP, 20 %        0.11 / .431  0.25 / .783  0.85 / .931  (.736)
    memorising MLP, 40 %        0.36 / .461  0.34 / .675  0.81 / .897  (.539)
    skorch MLP (Adam), 20 %     0.01 / .461  0.63 / .931  0.95 / .961  (.869)
    skorch MLP (Adam), 40 %     0.03 / .428  0.77 / .908  0.96 / .956  (.669)
    ==========================  ===========  ===========  ===========  ===========

    (share restored / test accuracy.)  Label-change influence lowered test
    accuracy in every setting; FVM raised it in every one and was never
    behind VM.  The finetuner's settings (radius, steps) were chosen on this
    benchmark, so tune ``finetune`` on data like yours.

    As for :class:`NoisyLabelDetector`, :meth:`score` is the held-out score
    of the model trained on the relabelled rows, :meth:`score_samples`
    (higher = more normal) is ``-suspicion_`` for given labelled rows, and
    there is no ``transform``: relabelling changes training labels, which a
    ``Pipeline`` transformer cannot return (use
    :class:`~skinfluence.CleanedClassifier` or ``fit_resample``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skinfluence import Relabeler
    >>> from skinfluence.datasets import inject_label_noise
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> X_train, y_train, X_val, y_val = X[:300], y[:300], X[300:420], y[300:420]
    >>> X_test, y_test = X[420:], y[420:]
    >>> y_noisy, flipped = inject_label_noise(y_train, 0.1, random_state=0)
    >>> model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1))
    >>> relabeler = Relabeler(model, max_fraction=0.1, random_state=0).fit(
    ...     X_train, y_noisy, X_val=X_val, y_val=y_val
    ... )
    >>> int(relabeler.relabeled_mask_.sum()) <= 30  # at most max_fraction
    True
    >>> relabeler.method_  # "auto" with a validation set
    'fvm'
    >>> fixed = relabeler.y_relabeled_  # suggested labels, the rest unchanged
    >>> bool(np.mean(fixed == y_train) > np.mean(y_noisy == y_train))
    True
    >>> accuracy = relabeler.score(X_test, y_test)  # model refitted on `fixed`
    >>> bool(accuracy >= model.fit(X_train, y_noisy).score(X_test, y_test))
    True
    """

    _parameter_constraints: dict = {
        **_COMMON,
        "method": [StrOptions({"auto", "label_influence", "vm", "fvm"})],
        "max_fraction": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        estimator=None,
        *,
        method="auto",
        curvature="auto",
        damping=0.0,
        max_fraction=0.1,
        finetune=None,
        refit=True,
        random_state=None,
        verbose=0,
        dtype=None,
        device=None,
        memory_budget=None,
        n_jobs=None,
    ):
        self.memory_budget = memory_budget
        self.n_jobs = n_jobs
        self.estimator = estimator
        self.method = method
        self.curvature = curvature
        self.damping = damping
        self.max_fraction = max_fraction
        self.finetune = finetune
        self.refit = refit
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.device = device

    @_fit_context(prefer_skip_nested_validation=False)
    @_within_budget
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        """Suggest labels and choose which to change.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            As the model takes it (``DataFrame``, list of documents, sparse);
            it reaches the model unchanged.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative per-row weights the model is fitted with.  Changing
            a row's label changes its term ``w_i loss_i`` of the weighted
            objective, so the gains and suspicions are those of the weighted
            fit (``"vm"``/``"fvm"``: the scores of row ``i`` times ``w_i^2``,
            as in :class:`NoisyLabelDetector`).  Rows of zero weight are
            never relabelled and ``max_fraction`` counts rows of positive
            weight.
        X_val, y_val : array-like, default=None
            A trusted (clean) validation set.

        Returns
        -------
        self : Relabeler
        """
        X, y = _row_indexable(X), _row_indexable(y)
        w = _weights(sample_weight, X)
        self.method_ = self._resolve_method(X_val, y_val)
        scorer = self._fit_scorer(X, y, sample_weight)
        if not scorer.adapter_.is_classifier:
            raise ValueError("Relabeler needs a classifier.")
        if self.method_ == "label_influence":
            if X_val is None and y_val is None:
                warnings.warn(
                    "Relabeler(method='label_influence') was given no validation "
                    "set, so the training set judges its own labels and the "
                    "relabelling can lower test accuracy. Pass a trusted X_val and "
                    "y_val to fit, or use method='vm'/'fvm' with one.",
                    UserWarning,
                    stacklevel=3,
                )
            Xv, yv = self._validation_set(X, y, X_val, y_val)
            R = label_change_on_mean_loss(scorer.adapter_, scorer.curvature_, Xv, yv)
            best = np.argmin(R, axis=1)
            self.relabel_gain_ = -R[np.arange(len(R)), best]
            self.suspicion_ = np.asarray(scorer.self_influence_, dtype=float)
        else:
            a_val, b_val = self._validation_minimum(X, y, X_val, y_val)
            R = validation_minimum_label_scores(a_val, b_val, X, verbose=self.verbose)
            R = w[:, None] ** 2 * R
            best = np.argmin(R, axis=1)
            own = R[np.arange(len(R)), encode_labels(self.classes_, y)]
            self.relabel_gain_ = own - R[np.arange(len(R)), best]
            self.suspicion_ = own
        # a tie (a row of zero weight scores 0 for every label) keeps the label
        codes = encode_labels(self.classes_, y)
        best = np.where(self.relabel_gain_ > 0, best, codes)
        self.suggested_labels_ = self.classes_[best]
        # suspects first (the highest suspicion among the fitted rows), then
        # only the ones whose best label is predicted to help
        order = np.argsort(-self.suspicion_, kind="stable")
        order = order[w[order] > 0]
        k = int(np.floor(self.max_fraction * len(order)))
        suspects = order[:k]
        chosen = suspects[self.relabel_gain_[suspects] > 0]
        self.relabeled_mask_ = np.zeros(len(R), dtype=bool)
        self.relabeled_mask_[chosen] = True
        y_new = np.asarray(y).copy()
        y_new[chosen] = self.suggested_labels_[chosen]
        self.y_relabeled_ = y_new
        self.sample_indices_ = np.arange(len(R))
        self._fit_cleaned_estimator(X, y, sample_weight)
        return self

    def _resolve_method(self, X_val, y_val):
        """``"auto"``: ``"fvm"`` with a validation set, a refusal without one."""
        if self.method != "auto":
            return self.method
        if X_val is None and y_val is None:
            if is_regressor(self._estimator()):
                # the more basic refusal first (a classifier is checked after
                # the fit, by the model's adapter)
                raise ValueError("Relabeler needs a classifier.")
            raise ValueError(
                "Relabeler(method='auto') relabels by 'fvm', which needs a trusted "
                "validation set: pass X_val and y_val to fit (inside a "
                "CleanedClassifier, enable metadata routing and "
                "cleaner.set_fit_request(X_val=True, y_val=True)). Without one, "
                "choose method='label_influence' explicitly: the training set "
                "then judges its own labels, which restores far fewer flipped "
                "labels than 'fvm' (benchmarks/noisy_labels.py)."
            )
        return "fvm"

    def _suspicion(self, X, y):
        """``suspicion_``'s definition for the given rows (unit weight)."""
        if self.method_ == "label_influence":
            return self._self_influence_of(X, y)
        return self._validation_minimum_of(X, y)

    def fit_relabel(self, X, y, sample_weight=None, **fit_params):
        """Fit and return ``y_relabeled_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.
        **fit_params : dict
            ``X_val``, ``y_val``.

        Returns
        -------
        y_relabeled : ndarray of shape (n_samples,)
        """
        return self.fit(X, y, sample_weight=sample_weight, **fit_params).y_relabeled_

    def _resampled_y(self, y):
        return self.y_relabeled_


def _cleaned_has(attr):
    def check(self):
        est = getattr(self, "estimator_", None)
        if est is None:
            est = self._get("estimator")
        getattr(est, attr)
        return True

    return check


def _weight_key(estimator, role: str) -> str:
    """The ``fit`` keyword that gives ``estimator`` its weights (routing off).

    A ``Pipeline`` takes them as ``<last step>__sample_weight``, as
    :class:`~skinfluence.InfluenceScorer` passes them.
    """
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        if last not in (None, "passthrough") and has_fit_parameter(
            last, "sample_weight"
        ):
            return f"{name}__sample_weight"
    elif has_fit_parameter(estimator, "sample_weight"):
        return "sample_weight"
    raise TypeError(
        f"The {role} ({type(estimator).__name__}) does not take sample_weight in "
        "fit, so it cannot be given the weights. Use one whose fit takes "
        "sample_weight, drop sample_weight, or enable metadata routing "
        "(sklearn.set_config(enable_metadata_routing=True)) and request the "
        "weights where they are wanted (set_fit_request(sample_weight=True))."
    )


def _is_per_sample(value, n: int) -> bool:
    if isinstance(value, str):
        return False
    try:
        return _num_samples(value) == n
    except TypeError:
        return False


class _Cleaned(_ReachableDefaults, MetaEstimatorMixin, BaseEstimator):
    """Clone, clean with ``cleaner.fit_resample``, refit on what is kept."""

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"]), None],
        "cleaner": [HasMethods(["fit_resample"]), None],
        "memory_budget": [Interval(Integral, 1, None, closed="left"), str, None],
        "n_jobs": [
            Interval(Integral, None, -1, closed="right"),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
    }

    def __init__(
        self, estimator=None, cleaner=None, *, memory_budget=None, n_jobs=None
    ):
        self.estimator = estimator
        self.cleaner = cleaner
        self.memory_budget = memory_budget
        self.n_jobs = n_jobs

    def _default_cleaner(self):
        return NoisyLabelDetector()

    def _defaults(self):
        return {"estimator": self._default_estimator, "cleaner": self._default_cleaner}

    def _get(self, name):
        """The sub-estimator ``name``, or the default that ``None`` stands for."""
        value = getattr(self, name)
        return self._defaults()[name]() if value is None else value

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, **params):
        """Clean the training set, then fit a clone of ``estimator`` on it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            As the estimators take it (a ``DataFrame`` for a
            ``ColumnTransformer`` that selects columns by name, a list of
            documents for a text pipeline, a sparse matrix): the cleaner and
            the estimator receive it, or its kept rows, unchanged.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Per-row weights for the cleaner's ``fit`` and, restricted to the
            rows the cleaner keeps (its ``sample_indices_``), the estimator's
            ``fit``.  Without metadata routing both get them (a ``Pipeline``
            as ``<last step>__sample_weight``) and a ``TypeError`` names the
            one that cannot take them; with routing they go where
            ``set_fit_request(sample_weight=True)`` asks for them.
        **params : dict
            Metadata routed (``sklearn.set_config(enable_metadata_routing=True)``)
            to the cleaner's ``fit`` (e.g. ``X_val``/``y_val`` after
            ``cleaner.set_fit_request(X_val=True, y_val=True)``) and to the
            estimator's ``fit`` (per-sample metadata is sliced to the kept rows).

        Returns
        -------
        self
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                "is None."
            )
        _raise_for_params(params, self, "fit")
        for stale in ("n_features_in_", "feature_names_in_"):
            self.__dict__.pop(stale, None)
        # records n_features_in_/feature_names_in_ when X has them; the data
        # itself is checked (and converted) by the models that take it
        validate_data(self, X, skip_check_array=True)
        if isinstance(self, ClassifierMixin):
            y = column_or_1d(y, warn=True)
        else:
            y = check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=False)
            if y.ndim == 2 and y.shape[1] == 1:
                y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        cleaner, estimator = self._get("cleaner"), self._get("estimator")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if _routing_enabled():
            if sample_weight is not None:
                params["sample_weight"] = sample_weight
            routed = process_routing(self, "fit", **params)
            cleaner_params, est_params = routed.cleaner.fit, routed.estimator.fit
        elif sample_weight is None:
            cleaner_params, est_params = {}, {}
        else:
            if _weight_key(cleaner, "cleaner") != "sample_weight":
                raise TypeError("A cleaner must take sample_weight in fit_resample.")
            cleaner_params = {"sample_weight": sample_weight}
            est_params = {_weight_key(estimator, "estimator"): sample_weight}
        self.cleaner_ = clone(cleaner)
        # the budget and workers reach a cleaner that takes them (ours do)
        accepted = self.cleaner_.get_params(deep=False)
        self.cleaner_.set_params(
            **{
                k: v
                for k, v in (
                    ("memory_budget", self.memory_budget),
                    ("n_jobs", self.n_jobs),
                )
                if v is not None and k in accepted
            }
        )
        if "refit" in accepted:
            # the cleaner's own refit (for its score) would duplicate estimator_
            self.cleaner_.set_params(refit=False)
        Xc, yc = self.cleaner_.fit_resample(X, y, **cleaner_params)
        est_params = self._to_kept_rows(est_params, _num_samples(X))
        self.estimator_ = clone(estimator)
        self.estimator_.fit(Xc, yc, **est_params)
        if hasattr(self.estimator_, "classes_"):
            self.classes_ = self.estimator_.classes_
        return self

    def _to_kept_rows(self, params, n):
        """Per-sample metadata restricted to the rows the cleaner kept."""
        per_sample = sorted(k for k, v in params.items() if _is_per_sample(v, n))
        if not per_sample:
            return dict(params)
        keep = getattr(self.cleaner_, "sample_indices_", None)
        if keep is None:
            raise ValueError(
                f"The cleaner {type(self.cleaner_).__name__} has no sample_indices_, "
                "so which rows it kept is unknown and the per-sample metadata "
                f"{per_sample} cannot follow them to the estimator. Use a cleaner "
                "that records sample_indices_ (NoisyLabelDetector, Relabeler, "
                "imbalanced-learn's under-samplers) or drop the metadata."
            )
        return {
            k: _safe_indexing(v, keep) if k in per_sample else v
            for k, v in params.items()
        }

    def get_metadata_routing(self):
        """Route ``fit`` metadata to the cleaner's and the estimator's ``fit``.

        Returns
        -------
        routing : MetadataRouter
        """
        return (
            MetadataRouter(owner=self)
            .add(
                cleaner=self._get("cleaner"),
                method_mapping=MethodMapping().add(caller="fit", callee="fit"),
            )
            .add(
                estimator=self._get("estimator"),
                method_mapping=MethodMapping()
                .add(caller="fit", callee="fit")
                .add(caller="score", callee="score"),
            )
        )

    @available_if(_cleaned_has("predict"))
    def predict(self, X):
        """The refitted estimator's ``predict``."""
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_cleaned_has("predict_proba"))
    def predict_proba(self, X):
        """The refitted estimator's ``predict_proba``."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_cleaned_has("decision_function"))
    def decision_function(self, X):
        """The refitted estimator's ``decision_function``."""
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self._get("estimator"))
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.target_tags.required = True
        return tags


class CleanedClassifier(ClassifierMixin, _Cleaned):
    """Clean the labels, then fit a classifier on the cleaned data.

    ``cleaner`` is anything with ``fit_resample``: a
    :class:`NoisyLabelDetector` (drops flagged rows), a :class:`Relabeler`
    (changes labels) or an imbalanced-learn sampler.  Cleaning happens inside
    ``fit``, so ``GridSearchCV`` tunes the cleaner's parameters by the
    downstream score on held-out folds.

    Parameters
    ----------
    estimator : classifier, default=None
        Cloned and fitted on the cleaned data; ``None`` means
        ``LogisticRegression()``.
    cleaner : object with ``fit_resample``, default=None
        Cloned; ``None`` means ``NoisyLabelDetector()``.  A default is
        reachable as any sub-estimator: ``set_params`` (and so
        ``GridSearchCV``) given ``cleaner__contamination`` or
        ``estimator__C`` puts the default in place of ``None`` first.  A
        cleaner with a ``refit`` parameter (ours) gets ``refit=False``: its
        own refit on the cleaned rows would duplicate ``estimator_``.  A
        ``Relabeler()`` (method ``"auto"``, i.e. FVM) needs ``X_val`` and
        ``y_val`` routed to it (metadata routing, below), or pass
        ``Relabeler(method="label_influence")``.
    memory_budget : int, str or None, default=None
        Passed to the cleaner when it takes it (:class:`NoisyLabelDetector`,
        :class:`Relabeler`) and not ``None``: bytes (or ``"2GB"``) any one
        block or dense curvature of its scorer may take.
    n_jobs : int or None, default=None
        Passed to the cleaner likewise: workers for its scorer's row blocks.

    Attributes
    ----------
    cleaner_ : object
        The fitted cleaner (``noisy_mask_``, ``sample_indices_``, ...).
    estimator_ : classifier
        The classifier fitted on the cleaned data.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skinfluence import CleanedClassifier, NoisyLabelDetector
    >>> from skinfluence.datasets import inject_label_noise
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> y_noisy, _ = inject_label_noise(y[:300], 0.1, random_state=0)
    >>> model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1))
    >>> cleaned = CleanedClassifier(model, NoisyLabelDetector(model))
    >>> cleaned = cleaned.fit(X[:300], y_noisy)  # drop flagged rows, refit
    >>> plain = model.fit(X[:300], y_noisy)
    >>> bool(cleaned.score(X[300:], y[300:]) > plain.score(X[300:], y[300:]))
    True
    """

    def _default_estimator(self):
        return LogisticRegression()


class CleanedRegressor(RegressorMixin, _Cleaned):
    """Drop suspicious targets, then fit a regressor on the rest.

    Parameters
    ----------
    estimator : regressor, default=None
        ``None`` means ``LinearRegression()``.
    cleaner : object with ``fit_resample``, default=None
        ``None`` means ``NoisyLabelDetector(LinearRegression())``; reachable
        by ``set_params``/``GridSearchCV`` as ``cleaner__<param>`` (the
        default is put in place of ``None`` first).
    memory_budget : int, str or None, default=None
        Passed to the cleaner when it takes it (:class:`NoisyLabelDetector`,
        :class:`Relabeler`) and not ``None``: bytes (or ``"2GB"``) any one
        block or dense curvature of its scorer may take.
    n_jobs : int or None, default=None
        Passed to the cleaner likewise: workers for its scorer's row blocks.

    Attributes
    ----------
    cleaner_ : object
    estimator_ : regressor
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from skinfluence import CleanedRegressor, NoisyLabelDetector
    >>> X, y = load_diabetes(return_X_y=True)
    >>> y_bad = y.copy()
    >>> y_bad[:10] += 300  # ten corrupted targets
    >>> cleaner = NoisyLabelDetector(Ridge(alpha=1.0), method="loss")
    >>> reg = CleanedRegressor(Ridge(alpha=1.0), cleaner).fit(X, y_bad)
    >>> bool(reg.cleaner_.noisy_mask_[:10].all())  # all ten dropped
    True
    >>> reg.estimator_.n_features_in_
    10
    """

    def _default_estimator(self):
        return LinearRegression()

    def _default_cleaner(self):
        return NoisyLabelDetector(LinearRegression())
