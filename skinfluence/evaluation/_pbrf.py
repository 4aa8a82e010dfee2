"""The proximal Bregman response function (PBRF): what influence estimates.

Bae, Ng, Lo, Ghassemi and Grosse (2022) show that for networks (non-convex,
often not converged) influence functions do not approximate leave-one-out
retraining but the PBRF: starting from the trained parameters ``theta_s``,
minimise the Bregman divergence of the outputs to ``theta_s``'s outputs, minus
the removed point's loss, plus ``(damping/2) ||theta - theta_s||^2``.  The
influence of the damped Gauss-Newton matrix is its linearisation.  For strictly
convex converged models (and damping -> 0) the PBRF equals leave-one-out.
"""

from __future__ import annotations

from typing import Any

from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import check_is_fitted

from ..models import ResponseFunction, require
from ._loo import response_changes


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


def pbrf_change(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    indices: ArrayLike,
    *,
    damping: float | None = None,
    target: str = "loss",
    verbose: int | None = None,
) -> NDArray:
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
    target : {"loss", "prediction"}, default="loss"
    verbose : int or None, default=None

    Returns
    -------
    delta : ndarray of shape (n_query, k)
        ``f_j(theta_pbrf,i) - f_j(theta_s)``, same orientation and scale as
        ``scorer.influence(X, y) / scorer.n_train_``.

    References
    ----------
    Bae, J. et al. "If Influence Functions are the Answer, Then What is the
    Question?" NeurIPS 2022.
    """
    lam = _damping(scorer, damping)
    adapter = _responsive(scorer, "pbrf_change")

    def model_without(i: int | None) -> Any:
        # theta_s itself minimises the PBRF when nothing is removed
        return adapter if i is None else adapter.response(i, damping=lam, kind="pbrf")

    return response_changes(
        scorer,
        X,
        y,
        indices,
        model_without,
        target=target,
        verbose=verbose,
        desc="PBRF",
    )


def proximal_change(
    scorer: Any,
    X: ArrayLike,
    y: ArrayLike | None,
    indices: ArrayLike,
    *,
    damping: float | None = None,
    target: str = "loss",
    verbose: int | None = None,
) -> NDArray:
    """Change under the proximal response: warm-start retraining of the
    training objective without the point, plus ``(damping/2) ||theta -
    theta_s||^2``.  The reference is the same objective with nothing removed.

    Parameters and returns as :func:`pbrf_change`.
    """
    lam = _damping(scorer, damping)
    adapter = _responsive(scorer, "proximal_change")

    def model_without(i: int | None) -> Any:
        return adapter.response(i, damping=lam, kind="proximal")

    return response_changes(
        scorer,
        X,
        y,
        indices,
        model_without,
        target=target,
        verbose=verbose,
        desc="proximal",
    )
