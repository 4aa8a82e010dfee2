"""scikit-learn-style displays (matplotlib) built on the estimators' outputs.

Each ``*Display`` follows scikit-learn's display API: ``from_estimator``
computes what it shows and plots it (``from_predictions`` plots numbers
computed elsewhere, where that makes sense), ``plot(ax=...)`` draws again on
any axes, and ``figure_``/``ax_`` hold the matplotlib objects.  matplotlib is
imported only when a display draws.
"""

from ._curvature_comparison import CurvatureComparisonDisplay
from ._explanation import ExplanationDisplay
from ._fidelity import FidelityDisplay
from ._influence_plot import InfluencePlotDisplay
from ._label_issues import LabelIssuesDisplay

__all__ = [
    "CurvatureComparisonDisplay",
    "ExplanationDisplay",
    "FidelityDisplay",
    "InfluencePlotDisplay",
    "LabelIssuesDisplay",
]
