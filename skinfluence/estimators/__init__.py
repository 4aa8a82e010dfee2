"""scikit-learn estimators: orchestration only, the math lives below."""

from ._influence_scorer import InfluenceScorer

__all__ = ["InfluenceScorer"]
