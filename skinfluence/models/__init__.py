"""Model adapters: a fitted estimator -> gradients, Hessian products, retraining.

Every adapter implements the core :class:`ModelAdapter`; what only some
models can do is a capability protocol (:class:`DenseCurvature`,
:class:`KroneckerStatistics`, :class:`Retrainable`, ...), asked for with
:func:`require`.  ``make_adapter.register`` plugs in a new model family.

The torch pieces (``TorchAdapter``, ``TorchClassifier``, ``TorchRegressor``)
import torch on first access; the linear path never does.
"""

from ._base import encode_labels, make_adapter, supported_estimators
from ._contract import (
    CurvatureSampler,
    DenseCurvature,
    GGNDiagonal,
    GradientProducts,
    HessianDiagonal,
    InputGradients,
    KroneckerStatistics,
    MinibatchCurvature,
    ModelAdapter,
    NamedParameters,
    Reparametrizable,
    ResidualDiagnostics,
    ResponseFunction,
    Retrainable,
    RowCurvature,
    SubsetHessian,
    TrainingCheckpoints,
    require,
)
from ._finetune import Finetuner
from ._huber import HuberAdapter
from ._kronecker import FISHER_TYPES, KroneckerLayer
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
    "FISHER_TYPES",
    "CurvatureSampler",
    "DenseCurvature",
    "Finetuner",
    "GGNDiagonal",
    "GradientProducts",
    "HessianDiagonal",
    "HuberAdapter",
    "InputGradients",
    "KroneckerLayer",
    "KroneckerStatistics",
    "LinearAdapter",
    "MinibatchCurvature",
    "ModelAdapter",
    "NamedParameters",
    "Reparametrizable",
    "ResidualDiagnostics",
    "ResponseFunction",
    "Retrainable",
    "RowCurvature",
    "SubsetHessian",
    "TorchAdapter",
    "TorchClassifier",
    "TorchRegressor",
    "TracInCheckpoints",
    "encode_labels",
    "TrainingCheckpoints",
    "make_adapter",
    "require",
    "supported_estimators",
]
