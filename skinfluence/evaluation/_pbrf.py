"""The proximal Bregman response function (PBRF): what influence estimates.

Bae, Ng, Lo, Ghassemi and Grosse (2022) show that for networks (non-convex,
often not converged) influence functions do not approximate leave-one-out
retraining but the PBRF: starting from the trained parameters ``theta_s``,
minimise the Bregman divergence of the outputs to ``theta_s``'s outputs, minus
the removed point's loss, plus ``(damping/2) ||theta - theta_s||^2``.  The
influence of the damped Gauss-Newton matrix is its linearisation.  For strictly
convex converged models (and damping -> 0) the PBRF equals leave-one-out.

Where the linearisation fails.  The PBRF objective's curvature at ``theta_s``
is ``G + damping I - (epsilon / n) H_m``: the removed point's own full Hessian
``H_m`` (network second-order terms included) enters with a minus sign.  For
a point the network fits badly ``H_m / n`` can match or exceed a small
damping; the response then runs far from ``theta_s`` (or has no nearby
minimum at all) and one such point dominates a correlation over removals.
``epsilon < 1`` removes only that fraction of the point and divides the change
by ``epsilon``: the second-order terms shrink with ``epsilon`` and the result
tends to the derivative of the PBRF, which influence with the damped
Gauss-Newton matrix equals exactly.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import check_is_fitted

from ..models import ResponseFunction, require
from ..utils._validation import check_indices
from ._loo import _response_changes

#: Keys of the per-removal solver report (``return_info=True``).
INFO_KEYS = ("grad_norm", "n_iter", "converged", "curvature")


def _damping(scorer: Any, damping: float | None) -> float:
    check_is_fitted(scorer, "curvature_")
    return float(scorer.curvature_.damping_ if damping is None else damping)


def _responsive(scorer: Any, purpose: str) -> Any:
    return require(
        scorer.adapter_,
        ResponseFunction,
        purpose=purpose,
        instead="give the adapter a response method, or use loo_change",
    )


def _check_epsilon(adapter: Any, epsilon: Any) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
        raise TypeError(f"epsilon must be a float in (0, 1]; got {epsilon!r}.")
    eps = float(epsilon)
    if not 0.0 < eps <= 1.0:
        raise ValueError(
            f"epsilon must be in (0, 1] (the fraction of the point removed); "
            f"got {epsilon!r}."
        )
    if eps != 1.0 and "epsilon" not in inspect.signature(adapter.response).parameters:
        raise TypeError(
            f"epsilon={eps} needs an adapter whose response method accepts "
            f"epsilon; {type(adapter).__name__}.response does not. Use epsilon=1."
        )
    return eps


class _Response:
    """``model_without`` of the response ground truths: the adapter's
    response with one trained row removed (a class, not a closure, so it
    pickles for workers)."""

    def __init__(self, adapter: Any, kind: str, damping: float, extra: dict) -> None:
        self.adapter = adapter
        self.kind = kind
        self.damping = damping
        self.extra = extra

    def __call__(self, i: int | None) -> Any:
        if i is None and self.kind == "pbrf":
            return self.adapter  # theta_s minimises the PBRF when nothing is removed
        return self.adapter.response(
            i, damping=self.damping, kind=self.kind, **self.extra
        )


def _changes(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    indices: ArrayLike,
    *,
    kind: str,
    damping: float | None,
    epsilon: float,
    target: str,
    verbose: int | None,
    return_info: bool,
    n_jobs: int | None,
) -> NDArray | tuple[NDArray, dict]:
    lam = _damping(scorer, damping)
    purpose = "pbrf_change" if kind == "pbrf" else "proximal_change"
    adapter = _responsive(scorer, purpose)
    eps = _check_epsilon(adapter, epsilon)
    extra = {} if eps == 1.0 else {"epsilon": eps}
    delta, infos = _response_changes(
        scorer,
        X,
        y,
        indices,
        _Response(adapter, kind, lam, extra),
        target=target,
        verbose=verbose,
        desc="PBRF" if kind == "pbrf" else "proximal",
        n_jobs=n_jobs,
    )
    delta = delta / eps
    # one report per requested row of the fit X; a row the model never
    # trained on (a skorch train_split) needs no solve
    rows = check_indices(
        list(indices) if not hasattr(indices, "__len__") else indices,
        scorer.n_samples_fit_,
    )
    trained = np.zeros(scorer.n_samples_fit_, dtype=bool)
    trained[scorer.train_indices_] = True
    held_out = {"grad_norm": np.nan, "n_iter": 0, "curvature": np.nan}
    per_row = [
        (info or {}) if trained[r] else held_out
        for r, info in zip(rows, infos, strict=True)
    ]
    info = {
        key: np.array([d.get(key, np.nan) for d in per_row], dtype=float)
        for key in INFO_KEYS
    }
    info["converged"] = np.array([bool(d.get("converged", True)) for d in per_row])
    bad = np.flatnonzero(~info["converged"])
    if bad.size:
        warnings.warn(
            f"The {purpose} solve did not converge for training row(s) "
            f"{rows[bad].tolist()[:10]} (final relative gradient norm up to "
            f"{np.nanmax(info['grad_norm'][bad]):.2g}): the objective has no "
            f"minimum near the trained parameters at damping={lam:g}. Raise "
            "damping or pass epsilon < 1; return_info=True gives the report.",
            UserWarning,
            stacklevel=3,
        )
    flat = np.flatnonzero(info["curvature"] <= 0)  # NaN compares False
    if kind == "pbrf" and eps == 1.0 and flat.size:
        warnings.warn(
            f"For training row(s) {rows[flat].tolist()[:10]} the PBRF objective curves "
            f"down at the trained parameters along its response (damping={lam:g}): "
            "the removed point's own second-order terms beat the proximity term, "
            "so its response is far from the linearisation that influence "
            "computes. Compare influence with epsilon < 1 (e.g. 0.02), or raise "
            "damping.",
            UserWarning,
            stacklevel=3,
        )
    return (delta, info) if return_info else delta


def pbrf_change(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    indices: ArrayLike,
    *,
    damping: float | None = None,
    epsilon: float = 1.0,
    target: str = "loss",
    verbose: int | None = None,
    return_info: bool = False,
    n_jobs: int | None = None,
) -> NDArray | tuple[NDArray, dict]:
    """Change of each query's loss under the PBRF with each point removed.

    Parameters
    ----------
    scorer : InfluenceScorer
        A fitted scorer.
    X : array-like of shape (n_query, n_features)
    y : array-like of shape (n_query,)
    indices : array-like of int of shape (k,)
        Training rows removed, one at a time.
    damping : float or None, default=None
        The proximity strength ``lambda``; ``None`` uses the scorer's fitted
        damping, so the PBRF is the one its influence linearises.
    epsilon : float in (0, 1], default=1.0
        Fraction of each point removed (Bae et al.'s ``epsilon = -1/n`` is
        ``1``); the change is divided by ``epsilon``.  Small values give the
        derivative of the PBRF (see the module notes): use them when the
        removed points' own curvature overwhelms the damping.
    target : {"loss", "prediction"}, default="loss"
    verbose : int or None, default=None
    return_info : bool, default=False
        Also return the solver's report per removal.
    n_jobs : int or None, default=None
        Solves run at once, through :class:`joblib.Parallel`: loky worker
        processes unless a ``joblib.parallel_config`` chooses another backend;
        under ``parallel_config(backend="dask")`` (with a
        ``dask.distributed.Client`` open) they run on the cluster.  ``None``
        uses the scorer's own ``n_jobs`` if it has one, else joblib's default
        (1, unless a ``parallel_config`` sets ``n_jobs``).  The result (and
        the report) equals the sequential one; see :func:`loo_change`.

    Returns
    -------
    delta : ndarray of shape (n_query, k)
        ``(f_j(theta_pbrf,i) - f_j(theta_s)) / epsilon``, same orientation and
        scale as ``scorer.influence(X, y) / scorer.n_train_``.
    info : dict of ndarray of shape (k,)
        Only with ``return_info=True``: ``"grad_norm"`` (final gradient norm
        relative to the initial one), ``"n_iter"`` (L-BFGS iterations),
        ``"converged"`` and ``"curvature"`` (the objective's curvature at
        ``theta_s`` along the response; compare it with ``damping``).  NaN
        where the adapter does not report.

    Warns
    -----
    UserWarning
        When a solve does not converge (no minimum near ``theta_s``).

    References
    ----------
    Bae, J. et al. "If Influence Functions are the Answer, Then What is the
    Question?" NeurIPS 2022.
    """
    return _changes(
        scorer,
        X,
        y,
        indices,
        kind="pbrf",
        damping=damping,
        epsilon=epsilon,
        target=target,
        verbose=verbose,
        return_info=return_info,
        n_jobs=n_jobs,
    )


def proximal_change(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    indices: ArrayLike,
    *,
    damping: float | None = None,
    epsilon: float = 1.0,
    target: str = "loss",
    verbose: int | None = None,
    return_info: bool = False,
    n_jobs: int | None = None,
) -> NDArray | tuple[NDArray, dict]:
    """Change under the proximal response: warm-start retraining of the
    training objective without the point, plus ``(damping/2) ||theta -
    theta_s||^2``.  The reference is the same objective with nothing removed.

    Parameters and returns as :func:`pbrf_change` (``n_jobs`` included).

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.preprocessing import scale
    >>> from skinfluence import InfluenceScorer
    >>> from skinfluence.evaluation import proximal_change
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> X = scale(X)
    >>> scorer = InfluenceScorer(LogisticRegression()).fit(X[:80], y[:80])
    >>> proximal_change(scorer, X[80:82], y[80:82], [0, 1, 2], n_jobs=2).shape
    (2, 3)
    """
    return _changes(
        scorer,
        X,
        y,
        indices,
        kind="proximal",
        damping=damping,
        epsilon=epsilon,
        target=target,
        verbose=verbose,
        return_info=return_info,
        n_jobs=n_jobs,
    )
