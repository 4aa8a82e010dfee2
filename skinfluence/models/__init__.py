"""Model adapters: a fitted estimator -> gradients, Hessian products, retraining.

The torch pieces (``TorchAdapter``, ``TorchClassifier``, ``TorchRegressor``)
import torch on first access; the linear path never does.
"""

from ._base import ModelAdapter, make_adapter, supported_estimators
from ._finetune import Finetuner
from ._huber import HuberAdapter
from ._linear import LinearAdapter

_TORCH = {
    "TorchAdapter": "._torch",
    "TorchClassifier": "._torch_estimators",
    "TorchRegressor": "._torch_estimators",
    "TracInCheckpoints": "._skorch",
}


def __getattr__(name: str):
    if name in _TORCH:
        import importlib

        return getattr(importlib.import_module(_TORCH[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Finetuner",
    "HuberAdapter",
    "LinearAdapter",
    "ModelAdapter",
    "TorchAdapter",
    "TorchClassifier",
    "TorchRegressor",
    "TracInCheckpoints",
    "make_adapter",
    "supported_estimators",
]
