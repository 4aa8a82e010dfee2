"""Influence math: pairwise, self, parameter change, perturbations, groups.

Blocked and model-agnostic: it asks adapters for gradients and backends for
solves, never which model or backend it has.
"""

from ._blockwise import (
    BlockStatistics,
    CurvatureFactor,
    block_influence,
    block_self_influence,
    block_statistics,
    curvature_factor,
    newton_step,
    objective_gradient,
)
from ._core import (
    SELF_INFLUENCE_METHODS,
    TARGETS,
    optimum_error,
    pairwise_influence,
    parameter_change,
    query_grads,
    self_influence,
    self_influence_plan,
    self_influence_result,
    stationarity,
    warn_if_not_stationary,
)
from ._explain import top_influence
from ._newton import (
    newton_pairwise,
    newton_parameter_change,
    newton_self_influence,
    regression_diagnostics,
)
from ._noisy import (
    tracin_pairwise,
    tracin_self_influence,
    validation_minimum_label_scores,
    validation_minimum_scores,
)
from ._questions import (
    group_influence,
    influence_on_mean_loss,
    input_perturbation,
    label_change,
    label_change_on_mean_loss,
    mean_loss_solution,
    self_prediction_influence,
)
from ._sketch import sketched_self_influence

__all__ = [
    "sketched_self_influence",
    "SELF_INFLUENCE_METHODS",
    "TARGETS",
    "BlockStatistics",
    "CurvatureFactor",
    "block_influence",
    "block_self_influence",
    "block_statistics",
    "curvature_factor",
    "newton_step",
    "objective_gradient",
    "newton_pairwise",
    "newton_parameter_change",
    "newton_self_influence",
    "regression_diagnostics",
    "group_influence",
    "influence_on_mean_loss",
    "input_perturbation",
    "label_change",
    "label_change_on_mean_loss",
    "mean_loss_solution",
    "pairwise_influence",
    "parameter_change",
    "query_grads",
    "self_influence",
    "self_influence_plan",
    "self_influence_result",
    "self_prediction_influence",
    "optimum_error",
    "stationarity",
    "tracin_pairwise",
    "top_influence",
    "tracin_self_influence",
    "validation_minimum_label_scores",
    "validation_minimum_scores",
    "warn_if_not_stationary",
]
