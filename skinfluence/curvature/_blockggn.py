"""Block-diagonal Gauss-Newton curvature: exact blocks, one per layer."""

from __future__ import annotations

import warnings
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..models import KroneckerStatistics, require
from ..utils._linalg import check_dense_fits
from ..utils._sklearn_compat import Interval, StrOptions
from ._base import CurvatureBackend, DenseFactor, check_rhs


class BlockGGNCurvature(CurvatureBackend):
    """Exact Gauss-Newton blocks, one per layer (or parameter tensor).

    ``C = blockdiag_b(G_bb)`` keeps the Gauss-Newton matrix ``G`` (with the L2
    penalty) inside each block and drops every cross-block term.  It is the
    step between the dense GGN and K-FAC in the decomposition of Hong et al.:
    ``GGN -> block GGN`` removes the cross-layer curvature, ``block GGN ->
    EK-FAC -> K-FAC`` approximates each block.  Each block is factorised once
    (Cholesky, or the eigen pseudo-inverse when singular).

    For torch networks the blocks come from per-sample output Jacobians and
    the square root of the output-space loss Hessian, streamed over row
    chunks (``K`` Jacobian rows per sample); memory is the sum of the squared
    block sizes.  Scikit-learn linear models have one layer, so their block
    GGN is the GGN.

    Parameters
    ----------
    blocks : {"layer", "tensor"}, default="layer"
        ``"layer"``: one block per module (weight and bias together, as
        K-FAC groups them); ``"tensor"``: one block per parameter tensor (as
        the "Better Hessians Matter" code does).
    rcond : float, default=1e-10
        Relative eigenvalue cut-off of the pseudo-inverse fallback.

    Attributes
    ----------
    blocks_ : list of (str, ndarray of int)
        Block names and their flat parameter indices.
    method_ : list of {"cholesky", "eigen"}
        The factorisation of each block.
    mean_eigenvalue_ : float
        ``trace(C) / n_params``.
    damping_ : float
    n_params_ : int

    See Also
    --------
    GGNCurvature : the dense Gauss-Newton matrix.
    KFACCurvature, EKFACCurvature : Kronecker approximations of the layer
        blocks.

    References
    ----------
    Hong, S., Eschenhagen, R., Mlodozeniec, B. and Turner, R. "Better Hessians
    Matter: Studying the Impact of Curvature Approximations in Influence
    Functions." arXiv:2509.23437, 2025.
    Martens, J. "New insights and perspectives on the natural gradient
    method." JMLR 2020.
    """

    _parameter_constraints: dict = {
        "blocks": [StrOptions({"layer", "tensor"})],
        "rcond": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, *, blocks: str = "layer", rcond: float = 1e-10) -> None:
        self.blocks = blocks
        self.rcond = rcond

    def _fit(self, adapter: Any) -> None:
        require(
            adapter,
            KroneckerStatistics,
            purpose="curvature='blockggn'",
            instead="use 'ggn' (the dense Gauss-Newton matrix) or 'cg'",
        )
        self.blocks_ = adapter.parameter_blocks(self.blocks)
        idx = [b for _, b in self.blocks_]
        check_dense_fits(
            self.n_params_,
            "block Gauss-Newton",
            blocks=[len(b) for b in idx],
            budget=self.memory_budget_,
        )
        self._G = adapter.ggn_blocks(idx, verbose=self._verbose)
        self.mean_eigenvalue_ = float(
            sum(np.trace(G) for G in self._G) / self.n_params_
        )

    def _factorize(self) -> None:
        self._factors = []
        for G in self._G:
            self._factors.append(
                DenseFactor(G + self.damping_ * np.eye(len(G)), self.rcond)
            )
        self.method_ = [f.method for f in self._factors]
        bad = [
            n
            for (n, _), f in zip(self.blocks_, self._factors, strict=True)
            if f.method != "cholesky"
        ]
        if bad:
            warnings.warn(
                f"The Gauss-Newton blocks {bad} plus damping are not positive "
                "definite; using their eigen pseudo-inverse. Add damping (e.g. "
                "damping=1e-3 or 'auto').",
                UserWarning,
                stacklevel=4,
            )

    def _solve(self, V: NDArray) -> NDArray:
        out = np.empty_like(V)
        for (_, idx), f in zip(self.blocks_, self._factors, strict=True):
            out[idx] = f.solve(V[idx])
        return out

    def solve_width(self, adapter: Any) -> int:
        """Stored block factors: the solution and one copy per column."""
        return 2 * int(adapter.n_params)

    def half_solve(self, V: NDArray) -> NDArray:
        """``W`` with ``W^T W = V^T (C + damping I)^{-1} V``: each block's
        triangular solve (or eigen square root), stacked in block order.

        Parameters
        ----------
        V : ndarray of shape (n_params, k)

        Returns
        -------
        W : ndarray of shape (n_params, k)
        """
        V = check_rhs(self, V)
        return np.vstack(
            [
                f.half_solve(V[idx])
                for (_, idx), f in zip(self.blocks_, self._factors, strict=True)
            ]
        )

    def curvature_matrix(self) -> NDArray:
        """The dense block-diagonal ``C`` (no damping) in the adapter's order.

        Returns
        -------
        C : ndarray of shape (n_params, n_params)
        """
        check_dense_fits(self.n_params_, "block Gauss-Newton matrix")
        C = np.zeros((self.n_params_, self.n_params_))
        for (_, idx), G in zip(self.blocks_, self._G, strict=True):
            C[np.ix_(idx, idx)] = G
        return C
