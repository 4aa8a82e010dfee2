"""The only module that imports private scikit-learn API.

scikit-learn keeps parameter validation and ``_fit_context`` private; importing
them from one place means a future rename is a one-line fix.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_params,
)

__all__ = ["HasMethods", "Interval", "StrOptions", "_fit_context", "validate_params"]
