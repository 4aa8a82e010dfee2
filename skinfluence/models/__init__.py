"""Model adapters: a fitted estimator -> gradients, Hessian products, retraining."""

from ._base import ModelAdapter, make_adapter, supported_estimators
from ._linear import LinearAdapter

__all__ = ["LinearAdapter", "ModelAdapter", "make_adapter", "supported_estimators"]
