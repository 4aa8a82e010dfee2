"""skinfluence: influence functions as scikit-learn estimators.

Sign convention: ``S[j, i] = grad f_j^T (H + damping I)^{-1} grad loss_i``;
removing training point ``i`` changes ``f_j`` by about ``S[j, i] / n_train``.
"""

from .estimators import (
    CleanedClassifier,
    CleanedRegressor,
    DaskInfluenceScorer,
    InfluenceScorer,
    NoisyLabelDetector,
    Relabeler,
)
from .models import Finetuner

__version__ = "0.1.0"


def __getattr__(name: str):
    # torch-backed estimators load torch only when asked for
    if name in ("TorchClassifier", "TorchRegressor", "TracInCheckpoints"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CleanedClassifier",
    "CleanedRegressor",
    "DaskInfluenceScorer",
    "Finetuner",
    "InfluenceScorer",
    "NoisyLabelDetector",
    "Relabeler",
    "TorchClassifier",
    "TorchRegressor",
    "TracInCheckpoints",
    "__version__",
]
