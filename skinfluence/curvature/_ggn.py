"""Dense generalised Gauss-Newton curvature."""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

from ._base import ggn_matrix
from ._exact import ExactCurvature


class GGNCurvature(ExactCurvature):
    """Exact ``(G + damping I)^{-1}`` with ``G`` the Gauss-Newton matrix.

    ``G = (1/n) sum_i J_i^T H_out,i J_i`` (plus the L2 term), where ``J_i`` is
    the Jacobian of the model outputs and ``H_out,i`` the Hessian of the loss
    with respect to them.  ``G`` drops the output-residual term of the
    Hessian, so it is positive semi-definite even where the network's Hessian
    is not; for softmax cross-entropy it equals the Fisher information.  For
    linear and logistic models ``G`` is the Hessian.

    Assembled densely from Gauss-Newton-vector products (``p^2`` memory); for
    large models use ``CGCurvature(operator="ggn")``.

    Parameters
    ----------
    rcond : float, default=1e-10
        Relative eigenvalue cut-off of the pseudo-inverse fallback (``G`` is
        singular along directions no output depends on, e.g. with no penalty).

    Attributes
    ----------
    method_ : {"cholesky", "eigen"}
    min_eigenvalue_ : float or None
    mean_eigenvalue_ : float
    n_params_ : int
    damping_ : float

    References
    ----------
    Martens, J. "New insights and perspectives on the natural gradient
    method." JMLR 2020.
    """

    def _curvature_matrix(self, adapter: Any) -> NDArray:
        return ggn_matrix(adapter, self.memory_budget_)
