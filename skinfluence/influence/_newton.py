"""Newton-corrected removal and the regression diagnostics built on it.

First-order removal moves the parameters by ``(H + damping I)^{-1} g_i / n``.
One Newton step of the objective *without* point ``i`` uses its Hessian
``H - J_i^T M_i J_i / n`` instead (``J_i`` the row's output Jacobian, ``M_i``
its weighted output Hessian, so ``J_i^T M_i J_i`` is the row's own curvature).
By the Woodbury identity, with ``C_i = J_i H^{-1} J_i^T`` (``K x K``)::

    n dtheta_i = H^{-1} g_i + H^{-1} J_i^T a_i,
    a_i = M_i (n I - C_i M_i)^{-1} J_i H^{-1} g_i,

which costs ``K + 1`` solves per row and never forms a ``p x p`` matrix.  For
least squares and ridge it is the exact leave-one-out change (the leverage
correction ``1 / (1 - h_i)``); for GLMs it is Pregibon's one-step estimate
(statsmodels' ``GLMInfluence.d_params`` with the opposite sign); for any other
curvature backend it is the same step with that backend's ``H``.

The generalised leverage of row ``i`` is ``h_i = tr(M_i C_i) / n``: for least
squares the hat matrix diagonal ``x_i^T (X^T X)^{-1} x_i``, for a GLM the
hat matrix diagonal with the observed information (statsmodels'
``get_hat_matrix_diag(observed=True)``, its default), and for a penalised model
the diagonal of the penalised hat matrix.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..models import ResidualDiagnostics, RowCurvature, require
from ..utils._chunks import chunk_size, chunks
from ..utils._progress import progress
from ..utils._validation import check_indices

#: ``I - C M / n`` with a singular value below this is treated as singular:
#: the row's leverage is 1 to within rounding.
_SINGULAR = 1e-10


def _require_rows(adapter: Any, what: str) -> None:
    require(
        adapter,
        RowCurvature,
        purpose=what,
        instead="use method='first_order'",
    )


def _row_block(adapter: Any, batch_size: int | None) -> int:
    width = adapter.n_params * (adapter.n_outputs + 2)
    return chunk_size(max(width, adapter.n_train), batch_size)


@dataclass
class NewtonTerms:
    """The pieces of the Newton step for a block of ``b`` training rows.

    ``n dtheta_i = H^{-1} g_i + HJ_i^T a_i`` (``Hg`` only when asked for).
    """

    G: NDArray  #: (b, p) the rows' training gradients g_i
    J: NDArray  #: (b, K, p) output Jacobians
    M: NDArray  #: (b, K, K) weighted output Hessians
    HJ: NDArray  #: (b, K, p) H^{-1} J_i^T, one column per output
    C: NDArray  #: (b, K, K) J_i H^{-1} J_i^T
    a: NDArray  #: (b, K) correction coefficients (NaN: leverage 1)
    Hg: NDArray | None  #: (b, p) H^{-1} g_i

    def steps(self) -> NDArray:
        """``n dtheta_i`` per row, (b, p)."""
        return self.Hg + np.einsum("bkp,bk->bp", self.HJ, self.a)

    def leverage(self, n: int) -> NDArray:
        """``h_i = tr(M_i C_i) / n``, (b,)."""
        return np.einsum("bkl,blk->b", self.M, self.C) / n


def newton_terms(
    adapter: Any,
    backend: Any,
    rows: Any,
    *,
    train_gradient: str = "loss",
    with_step: bool = True,
) -> NewtonTerms:
    """The Newton step's pieces for ``rows``: ``K`` solves per row, plus one
    for ``H^{-1} g_i`` when ``with_step`` (pairwise scores do not need it:
    ``J_i H^{-1} g_i = (H^{-1} J_i^T)^T g_i`` since ``H`` is symmetric)."""
    n, p = adapter.n_train, adapter.n_params
    G = adapter.train_grads(rows, total=train_gradient == "total")
    J, M = adapter.row_curvature(rows)
    b, K, _ = J.shape
    HJ = backend.solve(J.reshape(b * K, p).T).T.reshape(b, K, p)
    C = np.einsum("bkp,blp->bkl", J, HJ)
    Jv = np.einsum("bkp,bp->bk", HJ, G)
    A = np.eye(K) - C @ M / n
    # a row whose removal leaves the parameters undetermined (leverage 1)
    singular = np.linalg.svd(A, compute_uv=False).min(axis=1) < _SINGULAR
    A[singular] = np.eye(K)
    a = np.linalg.solve(A, Jv[:, :, None])[:, :, 0] / n
    a[singular] = np.nan
    a = np.einsum("bkl,bl->bk", M, a)
    Hg = backend.solve(G.T).T if with_step else None
    return NewtonTerms(G=G, J=J, M=M, HJ=HJ, C=C, a=a, Hg=Hg)


def _row_blocks(adapter, batch_size, verbose, desc) -> Iterator[slice]:
    blocks = list(chunks(adapter.n_train, _row_block(adapter, batch_size)))
    yield from progress(blocks, desc=desc, verbose=verbose)


def _warn_if_undetermined(values: NDArray, what: str) -> None:
    if np.any(~np.isfinite(values)):
        warnings.warn(
            f"{what}: the Newton step is undefined for "
            f"{int(np.sum(~np.isfinite(values).reshape(len(values), -1).any(1)))} "
            "row(s) that the model fits by themselves (leverage 1: removing one "
            "leaves its parameters undetermined); their values are NaN. Add "
            "damping or use method='first_order'.",
            RuntimeWarning,
            stacklevel=3,
        )


def newton_parameter_change(
    adapter: Any,
    backend: Any,
    indices: Any,
    *,
    train_gradient: str = "loss",
) -> NDArray:
    """``theta_{-i} - theta`` by one Newton step without each listed row, (k, p)."""
    _require_rows(adapter, "method='newton'")
    idx = check_indices(indices, adapter.n_train)
    if idx.size == 0:
        return np.empty((0, adapter.n_params))
    terms = newton_terms(adapter, backend, idx, train_gradient=train_gradient)
    out = terms.steps() / adapter.n_train
    _warn_if_undetermined(out, "parameter_change")
    return out


def newton_self_influence(
    adapter: Any,
    backend: Any,
    *,
    target: str = "loss",
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """``n grad f_i^T dtheta_i`` with the Newton step, ``f_i`` the row's own
    loss or prediction: (n,)."""
    _require_rows(adapter, "method='newton'")
    out = np.empty(adapter.n_train)
    for t in _row_blocks(adapter, batch_size, verbose, "self-influence (Newton)"):
        terms = newton_terms(adapter, backend, t, train_gradient=train_gradient)
        if target == "loss":
            F = adapter.train_grads(t) if train_gradient == "total" else terms.G
        else:
            F = adapter.train_prediction_grads(t)
        out[t] = np.einsum("bp,bp->b", F, terms.steps())
    _warn_if_undetermined(out, "self_influence")
    return out


def newton_pairwise(
    adapter: Any,
    backend: Any,
    Gq: NDArray,
    *,
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
) -> NDArray:
    """``S[j, i] = n grad f_j^T dtheta_i`` with the Newton step, (m, n).

    With ``q_j = H^{-1} grad f_j``: ``S[j, i] = q_j^T g_i + (J_i q_j)^T a_i``.
    """
    _require_rows(adapter, "method='newton'")
    Q = backend.solve(Gq.T).T  # (m, p)
    S = np.empty((len(Gq), adapter.n_train))
    for t in _row_blocks(adapter, batch_size, verbose, "influence (Newton)"):
        terms = newton_terms(
            adapter, backend, t, train_gradient=train_gradient, with_step=False
        )
        S[:, t] = Q @ terms.G.T + np.einsum("mp,bkp,bk->mb", Q, terms.J, terms.a)
    _warn_if_undetermined(S.T, "influence")
    return S


def regression_diagnostics(
    adapter: Any,
    backend: Any,
    *,
    train_gradient: str = "loss",
    batch_size: int | None = None,
    verbose: int = 0,
) -> dict[str, NDArray]:
    """Every diagnostic column, as arrays of shape (n,) (and ``dfbeta``, (n, p)).

    Single-output models follow statsmodels' ``OLSInfluence`` (least squares)
    and ``GLMInfluence`` (likelihood models) on the penalised hat matrix;
    models with several outputs get the columns that do not need a scalar
    residual (the others are NaN).  See ``InfluenceScorer.diagnostics``.
    """
    _require_rows(adapter, "The leverage")
    n, p = adapter.n_train, adapter.n_params
    h, dtheta = np.empty(n), np.empty((n, p))
    for t in _row_blocks(adapter, batch_size, verbose, "Newton removal"):
        terms = newton_terms(adapter, backend, t, train_gradient=train_gradient)
        h[t] = terms.leverage(n)
        dtheta[t] = terms.steps() / n
    out = {"leverage": h, "dfbeta": -dtheta}
    nan = np.full(n, np.nan)
    parts = None
    if isinstance(adapter, ResidualDiagnostics):  # single-output closed forms
        try:
            parts = adapter.residual_parts()
        except ValueError:  # several outputs
            parts = None
    if parts is None:
        # generalised Cook's distance: the Newton step in the norm of the
        # curvature it was taken with (Gauss-Newton, PSD, plus the damping)
        Hd = adapter.ggn_operator().matmat(dtheta.T).T + backend.damping_ * dtheta
        out.update(
            residual=nan,
            studentized_residual=nan,
            external_studentized_residual=nan,
            cooks_distance=n * np.einsum("ip,ip->i", dtheta, Hd) / p,
            dffits=nan,
            cov_ratio=nan,
            loo_residual=nan,
        )
        return out
    r = parts["pearson"]
    dof = n - p
    if parts["fixed_dispersion"]:
        phi = 1.0
        phi_i = np.ones(n)
    else:
        if dof <= 1:
            raise ValueError(
                f"Studentized residuals need more rows than parameters + 1; got "
                f"{n} rows for {p} parameters."
            )
        ss = float(r @ r)
        phi = ss / dof
        with np.errstate(divide="ignore", invalid="ignore"):
            phi_i = (ss - r**2 / (1 - h)) / (dof - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_int = r / np.sqrt(phi * (1 - h))
        r_ext = r / np.sqrt(phi_i * (1 - h))
        # each row's own output change, J_i dtheta_i, in row blocks: the
        # Jacobians of all rows at once would be another (n, p) array
        dz = np.empty(n)
        for t in chunks(n, chunk_size(2 * p, None)):
            J, _ = adapter.row_curvature(t)
            dz[t] = np.einsum("bkp,bp->bk", J, dtheta[t])[:, 0]
        out.update(
            residual=parts["response"],
            studentized_residual=r_int,
            external_studentized_residual=r_ext,
            cooks_distance=r_int**2 * h / (p * (1 - h)),
            dffits=r_ext * np.sqrt(h / (1 - h)),
            cov_ratio=(phi_i / phi) ** p / (1 - h),
            loo_residual=parts["response"] - parts["dmu_dz"] * dz,
        )
    return out
