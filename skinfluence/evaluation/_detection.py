"""Metrics for noisy-label detection and relabeling."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score


def detection_report(
    is_noisy: ArrayLike, scores: ArrayLike, *, k: int | None = None
) -> dict[str, float]:
    """ROC AUC, average precision and precision@k of a suspicion ranking.

    Parameters
    ----------
    is_noisy : array-like of bool of shape (n_samples,)
        Ground truth: True where the label is wrong.
    scores : array-like of shape (n_samples,)
        Higher = more suspicious (``NoisyLabelDetector.scores_``).
    k : int or None, default=None
        Points inspected for precision@k; ``None`` means the number of noisy
        points (so precision@k = recall@k).

    Returns
    -------
    report : dict
        ``{"roc_auc", "average_precision", "precision_at_k", "k"}``.
    """
    is_noisy = np.asarray(is_noisy, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    k = int(is_noisy.sum()) if k is None else int(k)
    top = np.argsort(-scores, kind="stable")[:k]
    return {
        "roc_auc": float(roc_auc_score(is_noisy, scores)),
        "average_precision": float(average_precision_score(is_noisy, scores)),
        "precision_at_k": float(is_noisy[top].mean()) if k else float("nan"),
        "k": k,
    }


def relabel_accuracy(
    y_true: ArrayLike, y_suggested: ArrayLike, mask: ArrayLike | None = None
) -> float:
    """Top-1 relabel accuracy: the share of ``mask`` points whose suggested
    label is the true one (by default over all points)."""
    y_true, y_suggested = np.asarray(y_true), np.asarray(y_suggested)
    mask = np.ones(len(y_true), bool) if mask is None else np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    return float(np.mean(y_true[mask] == y_suggested[mask]))
