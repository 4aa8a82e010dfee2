"""LiSSA: the stochastic Neumann series of Agarwal et al., as Koh & Liang run it."""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse.linalg import eigsh
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from .._constants import LISSA_AUTO_SCALE
from ..models import MinibatchCurvature, require
from ..utils._progress import progress
from ..utils._sklearn_compat import Interval, StrOptions
from ._base import CurvatureBackend, hessian_diagonal


class LiSSACurvature(CurvatureBackend):
    """``(H + damping I)^{-1} V`` by a stochastic Neumann series.

    With minibatch Hessians ``H_j`` (``batch_size`` training rows drawn with
    replacement)::

        h_0 = v;   h_j = v + h_{j-1} - (H_j + damping I) h_{j-1} / scale
        (H + damping I)^{-1} v  ~=  mean over repeats of h_depth / scale

    The fixed point is exact in expectation; the error decays like
    ``(1 - lambda_min / scale)^depth``, so ``depth`` must exceed
    ``scale / lambda_min`` (times a log factor), and ``scale`` must exceed the
    largest eigenvalue of every minibatch Hessian or the series diverges.

    Parameters
    ----------
    depth : int, default=5000
        Recursion steps per repeat.
    repeats : int, default=1
        Independent recursions averaged.
    batch_size : int, default=64
        Training rows per minibatch Hessian.
    scale : float or "auto", default="auto"
        ``"auto"``: 10 x the largest eigenvalue of the full Hessian, from
        Lanczos (``eigsh``).  A larger scale averages more minibatches per
        effective step (less noise) but needs a deeper recursion.
    random_state : int, RandomState instance or None, default=None
        Minibatch draws.
    operator : {"hessian", "ggn"}, default="hessian"
        The curvature whose minibatch products drive the series: the Hessian,
        or the Gauss-Newton matrix (positive semi-definite, so the series
        converges where an unconverged network's Hessian is indefinite).

    Attributes
    ----------
    scale_ : float
    mean_eigenvalue_ : float
    n_params_ : int
    damping_ : float

    Notes
    -----
    Koh & Liang's logistic-regression run used ``scale=25, depth=5000,
    repeats=10, batch_size=1``.  A diverging recursion (norms growing past
    1e6 x the start) raises a ``ConvergenceWarning``: raise ``scale`` or
    ``batch_size``.

    References
    ----------
    Agarwal, N., Bullins, B. and Hazan, E. "Second-order stochastic
    optimization for machine learning in linear time." JMLR 2017.
    """

    _parameter_constraints: dict = {
        "depth": [Interval(Integral, 1, None, closed="left")],
        "repeats": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "scale": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "random_state": ["random_state"],
        "operator": [StrOptions({"hessian", "ggn"})],
    }

    def __init__(
        self,
        depth: int = 5000,
        repeats: int = 1,
        batch_size: int = 64,
        scale: float | str = "auto",
        random_state: Any = None,
        operator: str = "hessian",
    ) -> None:
        self.depth = depth
        self.repeats = repeats
        self.batch_size = batch_size
        self.scale = scale
        self.random_state = random_state
        self.operator = operator

    def _fit(self, adapter: Any) -> None:
        ggn = self.operator == "ggn"
        require(
            adapter,
            MinibatchCurvature,
            purpose="curvature='lissa'",
            instead="use 'cg' (full-batch products) or 'exact'",
        )
        self._matvec = adapter.ggn_matvec if ggn else adapter.hessian_matvec
        self._n = adapter.n_train
        # one seed for every solve, drawn once: a RandomState shared by the
        # solves of concurrent row blocks (n_jobs threads) would hand out its
        # draws in scheduling order; an int random_state already behaves so
        rs = self.random_state
        self._seed = (
            rs
            if rs is None or isinstance(rs, Integral)
            else int(check_random_state(rs).randint(2**31 - 1))
        )
        self.mean_eigenvalue_ = float(np.mean(hessian_diagonal(adapter)))
        if self.scale == "auto":
            op = adapter.ggn_operator() if ggn else adapter.hessian_operator()
            v0 = check_random_state(0).standard_normal(adapter.n_params)
            top = eigsh(op, k=1, which="LA", v0=v0, tol=1e-3, return_eigenvectors=False)
            self.scale_ = LISSA_AUTO_SCALE * float(top[0])
        else:
            self.scale_ = float(self.scale)

    def solve_width(self, adapter: Any) -> int:
        """Per column: ``h``, the product, the sum (``~4 n_params``) and a
        minibatch's per-sample outputs (``2 batch_size n_outputs``)."""
        p = int(adapter.n_params)
        return 4 * p + 2 * int(self.batch_size) * int(adapter.n_outputs)

    def _solve(self, V: NDArray) -> NDArray:
        rng = check_random_state(self._seed)
        n, s = self._n, self.scale_ + self.damping_
        start = np.linalg.norm(V)
        out = np.zeros_like(V)
        for _ in range(self.repeats):
            h = V.copy()
            for _ in progress(range(self.depth), desc="LiSSA", verbose=self._verbose):
                rows = rng.randint(0, n, self.batch_size)
                Hh = self._matvec(h, rows) + self.damping_ * h
                h = V + h - Hh / s
            if not np.isfinite(h).all() or np.linalg.norm(h) > 1e6 * max(start, 1e-300):
                warnings.warn(
                    f"LiSSA diverged (scale={self.scale_:.3g}); raise "
                    "curvature__scale or curvature__batch_size.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            out += h / s
        return out / self.repeats

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags
