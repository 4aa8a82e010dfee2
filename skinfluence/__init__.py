"""skinfluence: influence functions as scikit-learn estimators.

Sign convention: ``S[j, i] = grad f_j^T (H + damping I)^{-1} grad loss_i``;
removing training point ``i`` changes ``f_j`` by about ``S[j, i] / n_train``.
"""

from .estimators import InfluenceScorer

__version__ = "0.1.0"

__all__ = ["InfluenceScorer", "__version__"]
