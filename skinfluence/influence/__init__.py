"""Influence math: pairwise, self, parameter change; blocked and model-agnostic."""

from ._core import (
    TARGETS,
    pairwise_influence,
    parameter_change,
    query_grads,
    self_influence,
    stationarity,
    warn_if_not_stationary,
)

__all__ = [
    "TARGETS",
    "pairwise_influence",
    "parameter_change",
    "query_grads",
    "self_influence",
    "stationarity",
    "warn_if_not_stationary",
]
