"""Warnings and errors specific to skinfluence."""

from sklearn.exceptions import ConvergenceWarning


class NotAtOptimumWarning(ConvergenceWarning):
    """The fitted model is not at a stationary point of its training objective.

    Influence functions linearise around an optimum; far from one, predicted
    and actual leave-one-out changes diverge.  Tighten the wrapped model's
    ``tol`` or raise its ``max_iter``.
    """


class MissingCapabilityError(TypeError, ValueError):
    """The model's adapter lacks a capability that the computation asked needs.

    Raised by :func:`skinfluence.models.require`, with a message naming the
    model, the capability, which models have it and what to use instead.  It
    is a ``TypeError`` (the model is of the wrong kind for the request) and,
    like scikit-learn's ``NotFittedError``, also a ``ValueError``, so code
    that caught the ``ValueError`` some of these requests raised before keeps
    working.
    """


__all__ = ["MissingCapabilityError", "NotAtOptimumWarning"]
