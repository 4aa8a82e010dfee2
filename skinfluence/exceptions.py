"""Warnings and errors specific to skinfluence."""

from sklearn.exceptions import ConvergenceWarning


class NotAtOptimumWarning(ConvergenceWarning):
    """The fitted model is not at a stationary point of its training objective.

    Influence functions linearise around an optimum; far from one, predicted
    and actual leave-one-out changes diverge.  Tighten the wrapped model's
    ``tol`` or raise its ``max_iter``.
    """


__all__ = ["NotAtOptimumWarning"]
