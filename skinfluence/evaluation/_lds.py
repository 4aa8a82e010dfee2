"""Linear datamodelling score (LDS): influence against retraining on subsets.

The ground truth (random subsets, retrained) is computed once by
:func:`lds_ground_truth` and can score any number of influence matrices with
:func:`lds_from_scores`; :func:`lds` does both for one scorer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.utils import check_consistent_length, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..models import Retrainable, require
from ..utils._sklearn_compat import Interval, StrOptions, validate_params
from ._parallel import chunks, contiguous, progress_bar, resolve_n_jobs, run, seeded

# Draws of one subset before giving up when every retrain on it fails.
MAX_REDRAWS = 10
_HIGHER_IS = {"helpful": 1.0, "harmful": -1.0}
_SEED_HIGH = 2**31 - 1


@dataclass(frozen=True, eq=False)
class LDSGroundTruth:
    """Retraining results on random subsets, reusable across influence methods.

    Returned by :func:`lds_ground_truth`; pass it to :func:`lds_from_scores`.

    Attributes
    ----------
    masks : ndarray of bool of shape (n_subsets, n_samples_fit)
        ``masks[j, i]``: row ``i`` of the fit ``X`` is kept in subset ``j``
        (rows a skorch ``train_split`` held out are always kept: never
        trained on, never removed).
    losses : ndarray of shape (n_query, n_subsets)
        Measured quantity (query loss or prediction) of the models retrained
        on each subset, averaged over seeds.
    seed_losses : ndarray of shape (n_seeds, n_query, n_subsets)
        The same, one slice per seed.
    seeds : ndarray of int of shape (n_subsets, n_seeds)
        The ``random_state`` passed to each retrain.
    alpha : float
        Fraction of training points kept.
    target : {"loss", "prediction"}
        The measured quantity.
    warm_start : bool
        Whether retrains started from the fitted parameters.
    n_redraws : int
        Subsets drawn again because retraining on them failed (e.g. a class
        dropped out); non-zero means the subsets are conditioned on success.
    """

    masks: NDArray = field(repr=False)
    losses: NDArray = field(repr=False)
    seed_losses: NDArray = field(repr=False)
    seeds: NDArray = field(repr=False)
    alpha: float
    target: str
    warm_start: bool
    n_redraws: int

    @property
    def n_subsets(self) -> int:
        """Number of subsets."""
        return self.masks.shape[0]

    @property
    def n_train(self) -> int:
        """Number of rows the masks index: the rows of the ``X`` given to the
        scorer's ``fit`` (those a skorch ``train_split`` held out are always
        kept, so they never count as removed)."""
        return self.masks.shape[1]

    @property
    def n_query(self) -> int:
        """Number of query rows."""
        return self.losses.shape[0]


_PROTOCOL = {
    "alpha": [Interval(Real, 0, 1, closed="neither")],
    "n_subsets": [Interval(Integral, 2, None, closed="left")],
    "n_seeds": [Interval(Integral, 1, None, closed="left")],
    "warm_start": ["boolean"],
    "target": [StrOptions({"loss", "prediction"})],
    "random_state": ["random_state"],
    "verbose": ["verbose", None],
    "n_jobs": [Integral, None],
}
_SCORING = {
    "return_per_query": ["boolean"],
    "confidence_level": [Interval(Real, 0, 1, closed="neither"), None],
    "n_resamples": [Interval(Integral, 1, None, closed="left")],
}


@validate_params(
    {"scorer": "no_validation", "X": "no_validation", "y": "no_validation"} | _PROTOCOL,
    prefer_skip_nested_validation=True,
)
def lds_ground_truth(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    *,
    alpha: float = 0.5,
    n_subsets: int = 50,
    n_seeds: int = 1,
    warm_start: bool = False,
    target: str = "loss",
    random_state: Any = None,
    verbose: int | None = None,
    n_jobs: int | None = None,
) -> LDSGroundTruth:
    """Retrain on random subsets and measure every query: the LDS ground truth.

    Draws ``n_subsets`` subsets of ``floor(alpha * n_train)`` training points
    uniformly without replacement, retrains the wrapped model on each through
    ``scorer.adapter_.retrain(mask, warm_start=..., random_state=seed)``,
    ``n_seeds`` times with different seeds, and averages the measured query
    losses over seeds.  Compute it once and score many influence methods
    against it with :func:`lds_from_scores`.

    Parameters
    ----------
    scorer : InfluenceScorer
        A fitted scorer; its ``adapter_`` provides the retrain hook and its
        training set (``adapter_.n_train`` rows: for a skorch net with a
        ``train_split``, the rows in ``train_indices_``).
    X : array-like of shape (n_query, n_features)
        Query inputs.
    y : array-like of shape (n_query,) or None
        Query targets (unused for ``target="prediction"``).
    alpha : float, default=0.5
        Fraction of training points kept, in (0, 1).
    n_subsets : int, default=50
        Number of random subsets (at least 2; BHM use 100).
    n_seeds : int, default=1
        Retrains per subset, averaged; seeds matter for cold-started networks.
    warm_start : bool, default=False
        Start each retrain from the fitted parameters.  ``False`` retrains
        from scratch with the original recipe, as in BHM.
    target : {"loss", "prediction"}, default="loss"
        The measured quantity, as in ``InfluenceScorer.influence``.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsets and the per-retrain seeds.
    verbose : int or None, default=None
        Progress bar over subsets; ``None`` uses ``scorer.verbose``.
    n_jobs : int or None, default=None
        Retrains run at once, through :class:`joblib.Parallel`: loky worker
        processes unless a ``joblib.parallel_config`` chooses another backend;
        under ``parallel_config(backend="dask")`` (with a
        ``dask.distributed.Client`` open) they run on the cluster.  ``None``
        uses the scorer's own ``n_jobs`` if it has one, else joblib's default
        (1, unless a ``parallel_config`` sets ``n_jobs``); ``-1`` uses every
        core.  The result equals the sequential one: subsets and seeds are
        drawn in the calling process, in subset order, before their retrains
        run (a failed subset is redrawn after the round, in subset order);
        each retrain also seeds numpy's and torch's global generators with
        its seed.

    Returns
    -------
    ground_truth : LDSGroundTruth

    Raises
    ------
    RuntimeError
        When retraining fails on :data:`MAX_REDRAWS` successive draws of one
        subset.  A retrain (or the measurement after it) that raises
        ``ValueError``, e.g. because a classifier's subset dropped a class,
        has its subset drawn again; other errors propagate.

    Examples
    --------
    >>> import joblib
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.evaluation import lds_ground_truth
    >>> X, y = load_diabetes(return_X_y=True)
    >>> scorer = InfluenceScorer(Ridge()).fit(X[:100], y[:100])
    >>> with joblib.parallel_config(n_jobs=2):  # or backend="dask" on a cluster
    ...     truth = lds_ground_truth(scorer, X[100:105], y[100:105], n_subsets=8,
    ...                              random_state=0)
    >>> truth.losses.shape
    (5, 8)
    """
    check_is_fitted(scorer, "adapter_")
    if target == "loss" and y is None:
        raise ValueError("target='loss' needs y; pass y or use target='prediction'.")
    validate_data(scorer, X, skip_check_array=True, reset=False)
    if y is not None:
        check_consistent_length(X, y)
    adapter = require(
        scorer.adapter_,
        Retrainable,
        purpose="lds_ground_truth",
        instead="give the adapter a retrain method",
    )
    n = adapter.n_train
    k = int(np.floor(alpha * n))
    if k < 1:
        raise ValueError(
            f"alpha={alpha} keeps floor(alpha * n_train) = {k} of the {n} "
            "training points; raise alpha."
        )
    rng = check_random_state(random_state)
    verbose = getattr(scorer, "verbose", 0) if verbose is None else verbose
    n_jobs = resolve_n_jobs(n_jobs, scorer)
    X, y = contiguous(X), contiguous(y)  # the layout the workers receive
    masks, seeds, values, redraws = _draw_and_measure(
        adapter,
        X,
        y,
        rng,
        n,
        k,
        n_subsets,
        n_seeds,
        warm_start=warm_start,
        target=target,
        n_jobs=n_jobs,
        verbose=verbose,
    )
    seed_losses = np.stack(values, axis=-1)  # (n_seeds, n_query, n_subsets)
    masks = np.asarray(masks)
    # the masks index the rows of the X given to fit, like the scorer's
    # columns: rows a skorch train_split held out are never removed
    trained = np.asarray(getattr(scorer, "train_indices_", np.arange(n)))
    n_rows = getattr(scorer, "n_samples_fit_", n)
    if n_rows != n:
        full = np.ones((len(masks), n_rows), dtype=bool)
        full[:, trained] = masks
        masks = full
    return LDSGroundTruth(
        masks=masks,
        losses=seed_losses.mean(axis=0),
        seed_losses=seed_losses,
        seeds=np.asarray(seeds),
        alpha=float(alpha),
        target=target,
        warm_start=bool(warm_start),
        n_redraws=redraws,
    )


def _measure_subsets(
    adapter: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    warm_start: bool,
    target: str,
    draws: list[tuple[NDArray, NDArray]],
) -> list[NDArray | ValueError]:
    """One task: per ``(keep, seeds)``, the measured values of shape
    ``(n_seeds, n_query)``, or the ValueError its retrain raised."""
    out: list[NDArray | ValueError] = []
    for keep, seeds in draws:
        try:
            rows = []
            for seed in seeds:
                # the retrain's own random_state, and the global generators
                # for what it leaves to them (warm-started nets), per retrain
                with seeded(int(seed)):
                    new = adapter.retrain(
                        keep, warm_start=warm_start, random_state=int(seed)
                    )
                    rows.append(
                        new.loss(X, y) if target == "loss" else new.prediction(X)
                    )
            out.append(np.asarray(rows, dtype=float))
        except ValueError as exc:
            out.append(exc)
    return out


def _draw_and_measure(
    adapter: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    rng: np.random.RandomState,
    n: int,
    k: int,
    n_subsets: int,
    n_seeds: int,
    *,
    warm_start: bool,
    target: str,
    n_jobs: int | None,
    verbose: int,
) -> tuple[list[NDArray], list[NDArray], list[NDArray], int]:
    """Draw ``n_subsets`` subsets of ``k`` of ``n`` points with their seeds,
    retrain on them, and redraw the subsets whose retrain raised ValueError.

    Draws come from ``rng`` in subset order, in rounds: every subset first,
    then the failed ones again, in subset order, until none fails.  The
    draws thus depend on which retrains failed, never on the order in which
    the retrains ran, so ``n_jobs`` does not change the result.
    """
    masks: list = [None] * n_subsets
    seeds: list = [None] * n_subsets
    values: list = [None] * n_subsets
    failures = np.zeros(n_subsets, dtype=int)
    pending = list(range(n_subsets))
    with progress_bar(n_subsets, "LDS retrains", verbose) as bar:
        while pending:
            for j in pending:
                keep = np.zeros(n, dtype=bool)
                keep[rng.choice(n, size=k, replace=False)] = True
                masks[j], seeds[j] = keep, rng.randint(_SEED_HIGH, size=n_seeds)
            parts = chunks(len(pending), n_jobs)
            tasks = [
                (adapter, X, y, warm_start, target, [(masks[j], seeds[j]) for j in js])
                for js in ([pending[i] for i in c] for c in parts)
            ]
            failed = []
            done = run(_measure_subsets, tasks, n_jobs=n_jobs)
            for c, part in zip(parts, done, strict=True):
                for i, result in zip(c, part, strict=True):
                    j = pending[i]
                    if not isinstance(result, ValueError):
                        values[j] = result
                        bar.update(1)
                        continue
                    failures[j] += 1
                    if failures[j] == MAX_REDRAWS:
                        raise RuntimeError(
                            f"Retraining failed on {MAX_REDRAWS} successive random "
                            f"subsets of {k} of {n} training points; last error: "
                            f"{result!r}. Raise alpha, or check that the model "
                            "can be fitted on such a subset."
                        ) from result
                    failed.append(j)
            pending = sorted(failed)
    return masks, seeds, values, int(failures.sum())


def _rowwise_spearman(P: NDArray, A: NDArray) -> NDArray:
    """Spearman correlation along the last axis (ties averaged; nan if constant)."""
    rp = stats.rankdata(P, axis=-1)
    ra = stats.rankdata(A, axis=-1)
    rp -= rp.mean(axis=-1, keepdims=True)
    ra -= ra.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (rp * ra).sum(axis=-1) / np.sqrt((rp**2).sum(axis=-1) * (ra**2).sum(-1))
    return r


def _nanmean(values: NDArray, axis: int | None = None) -> NDArray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan slices -> nan
        return np.nanmean(values, axis=axis)


@validate_params(
    {
        "scores": ["array-like"],
        "ground_truth": [LDSGroundTruth],
        "higher_is": [StrOptions(set(_HIGHER_IS))],
        "random_state": ["random_state"],
    }
    | _SCORING,
    prefer_skip_nested_validation=True,
)
def lds_from_scores(
    scores: ArrayLike,
    ground_truth: LDSGroundTruth,
    *,
    higher_is: str = "helpful",
    return_per_query: bool = False,
    confidence_level: float | None = None,
    n_resamples: int = 1000,
    random_state: Any = None,
) -> float | tuple:
    """LDS of an influence matrix against precomputed subset retrains.

    Parameters
    ----------
    scores : array-like of shape (n_query, n_train)
        Influence of every training point on every query, e.g.
        ``scorer.influence(X, y)``.
    ground_truth : LDSGroundTruth
        From :func:`lds_ground_truth` on the same queries and training set.
    higher_is : {"helpful", "harmful"}, default="helpful"
        Orientation of ``scores``: ``"helpful"`` for skinfluence's removal
        scores (``scores[v, i] > 0``: removing ``i`` raises ``v``'s loss),
        ``"harmful"`` for scores of the opposite sign (up-weighting or
        inclusion effects, e.g. ``upweighting``).
    return_per_query : bool, default=False
        Also return the LDS of every query.
    confidence_level : float or None, default=None
        Also return a bootstrap confidence interval (BCa, resampling subsets,
        ``scipy.stats.bootstrap``) at this level, e.g. 0.95.
    n_resamples : int, default=1000
        Bootstrap resamples.
    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap.

    Returns
    -------
    score : float
        Mean of the per-query LDS over queries where it is defined (nan, with
        a warning, if it is defined for none).
    per_query : ndarray of shape (n_query,)
        Only with ``return_per_query=True``.  Nan where the predictions or the
        measured values are constant over subsets (e.g. a zero score row).
    ci : tuple of float
        ``(low, high)``, only when ``confidence_level`` is given.

    Notes
    -----
    With ``n = n_train`` and ``R_j`` the points removed from subset ``j``,
    the predicted value of query ``v`` is (up to the full model's value, a
    constant) ``p_v(j) = sum_{i in R_j} scores[v, i] / n``: the first-order
    effect of removing ``R_j``.  ``LDS(v)`` is the Spearman correlation over
    subsets of ``p_v(j)`` with the measured ``ground_truth.losses[v, j]``, and
    the score is its mean over queries.  It is invariant to the scale of
    ``scores`` and to adding a constant to a row (subsets have equal size).
    """
    S = np.asarray(scores, dtype=float) * _HIGHER_IS[higher_is]
    expected = (ground_truth.n_query, ground_truth.n_train)
    if S.shape != expected:
        raise ValueError(
            f"scores must have shape (n_query, n_train) = {expected} to match the "
            f"ground truth; got {S.shape}."
        )
    removed = ~ground_truth.masks
    P = S @ removed.T / ground_truth.n_train  # (n_query, n_subsets)
    A = ground_truth.losses
    per_query = _rowwise_spearman(P, A)
    score = float(_nanmean(per_query))
    if np.isnan(score):
        warnings.warn(
            "LDS is undefined for every query: predictions or measured values are "
            "constant over subsets.",
            UserWarning,
            stacklevel=2,
        )
    out: tuple = (score,)
    if return_per_query:
        out += (per_query,)
    if confidence_level is not None:
        out += (_bootstrap_ci(P, A, confidence_level, n_resamples, random_state),)
    return out[0] if len(out) == 1 else out


def _bootstrap_ci(
    P: NDArray, A: NDArray, level: float, n_resamples: int, random_state: Any
) -> tuple[float, float]:
    """BCa interval of the mean LDS, resampling subsets (columns)."""

    def statistic(idx: NDArray, axis: int = -1) -> NDArray:
        # idx has shape (..., n_subsets); the result keeps the leading axes.
        return _nanmean(_rowwise_spearman(P[:, idx], A[:, idx]), axis=0)

    seed = check_random_state(random_state).randint(_SEED_HIGH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(
            (np.arange(P.shape[1]),),
            statistic,
            n_resamples=n_resamples,
            batch=max(1, 2**22 // P.size),
            vectorized=True,
            confidence_level=level,
            rng=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@validate_params(
    {
        "scorer": "no_validation",
        "X": "no_validation",
        "y": "no_validation",
        "scores": ["array-like", None],
    }
    | _PROTOCOL
    | _SCORING,
    prefer_skip_nested_validation=True,
)
def lds(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    *,
    alpha: float = 0.5,
    n_subsets: int = 50,
    n_seeds: int = 1,
    warm_start: bool = False,
    target: str = "loss",
    scores: ArrayLike | None = None,
    return_per_query: bool = False,
    confidence_level: float | None = None,
    n_resamples: int = 1000,
    random_state: Any = None,
    verbose: int | None = None,
    n_jobs: int | None = None,
) -> float | tuple:
    """Linear datamodelling score of a fitted scorer's influence.

    Retrains on ``n_subsets`` random subsets keeping ``floor(alpha *
    n_train)`` training points (:func:`lds_ground_truth`), predicts each
    query's loss on each subset from ``scorer.influence(X, y)`` and returns
    the mean over queries of the Spearman correlation over subsets between
    predicted and measured losses (:func:`lds_from_scores`).  To score several
    influence methods against the same retrains, call those two functions.

    Parameters
    ----------
    scorer : InfluenceScorer
        A fitted scorer (its ``adapter_`` provides the retrain hook).
    X : array-like of shape (n_query, n_features)
        Query inputs.
    y : array-like of shape (n_query,) or None
        Query targets (unused for ``target="prediction"``).
    alpha : float, default=0.5
        Fraction of training points kept, in (0, 1).
    n_subsets : int, default=50
        Number of random subsets (at least 2).
    n_seeds : int, default=1
        Retrains per subset with different seeds, averaged.
    warm_start : bool, default=False
        Start retrains from the fitted parameters; ``False`` retrains from
        scratch (BHM's protocol).
    target : {"loss", "prediction"}, default="loss"
        The measured quantity, as in ``InfluenceScorer.influence``.
    scores : array-like of shape (n_query, n_train) or None, default=None
        Precomputed influence in skinfluence's orientation (as
        ``scorer.influence(X, y, target=target)``); ``None`` computes it.
    return_per_query : bool, default=False
        Also return the LDS of every query.
    confidence_level : float or None, default=None
        Also return a bootstrap confidence interval over subsets.
    n_resamples : int, default=1000
        Bootstrap resamples.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsets, the retrain seeds and the bootstrap.
    verbose : int or None, default=None
        Progress bar over subsets; ``None`` uses ``scorer.verbose``.
    n_jobs : int or None, default=None
        Retrains run at once, as in :func:`lds_ground_truth` (the same
        result for any ``n_jobs`` or joblib backend).

    Returns
    -------
    score : float
        Mean per-query LDS, in [-1, 1]; higher is better.
    per_query : ndarray of shape (n_query,)
        Only with ``return_per_query=True``; nan where undefined.
    ci : tuple of float
        ``(low, high)``, only when ``confidence_level`` is given.

    See Also
    --------
    lds_ground_truth : The retrains, reusable across influence methods.
    lds_from_scores : The score of an influence matrix against them.

    Notes
    -----
    Orientation: removing training point ``i`` changes query ``v``'s loss by
    about ``S[v, i] / n_train`` (``S = scorer.influence(X, y)``), so the
    predicted loss on a subset is the full model's loss plus the sum of
    ``S[v, i] / n_train`` over the *removed* points.  Equivalently, BHM's
    ``sum_{i in S_j} tau(v, i)`` with ``tau = -S / n_train`` the inclusion
    effect.

    References
    ----------
    Park, S. M., Georgiev, K., Ilyas, A., Leclerc, G. and Madry, A. "TRAK:
    Attributing Model Behavior at Scale." ICML 2023.

    Hong, W. et al. "Better Hessians Matter: Studying the Impact of Curvature
    Approximations in Influence Functions." 2025.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.evaluation import lds
    >>> X, y = load_diabetes(return_X_y=True)
    >>> scorer = InfluenceScorer(Ridge(alpha=1.0)).fit(X[:200], y[:200])
    >>> score = lds(scorer, X[200:220], y[200:220], n_subsets=20, random_state=0)
    >>> bool(score > 0.8)
    True
    """
    if scores is not None:  # fail before the retrains, not after
        check_is_fitted(scorer, "adapter_")
        n_query = X.shape[0] if hasattr(X, "shape") else len(X)
        expected = (n_query, scorer.n_samples_fit_)
        if np.shape(scores) != expected:
            raise ValueError(
                f"scores must have shape (n_query, n_train) = {expected}; got "
                f"{np.shape(scores)}."
            )
    truth = lds_ground_truth(
        scorer,
        X,
        y,
        alpha=alpha,
        n_subsets=n_subsets,
        n_seeds=n_seeds,
        warm_start=warm_start,
        target=target,
        random_state=random_state,
        verbose=verbose,
        n_jobs=n_jobs,
    )
    if scores is None:
        scores = scorer.influence(X, y, target=target)
    return lds_from_scores(
        scores,
        truth,
        return_per_query=return_per_query,
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        random_state=random_state,
    )
