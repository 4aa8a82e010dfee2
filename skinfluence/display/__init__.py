"""scikit-learn-style displays (matplotlib) built on the estimators' outputs.

Each ``*Display`` follows scikit-learn's display API: ``from_estimator``
computes what it shows and plots it, ``plot(ax=...)`` draws again on any
axes, and ``figure_``/``ax_`` hold the matplotlib objects.
"""

from ._influence_plot import InfluencePlotDisplay

__all__ = ["InfluencePlotDisplay"]
