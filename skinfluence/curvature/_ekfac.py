"""EK-FAC: the K-FAC eigenbasis with eigenvalues refitted to the gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..utils._chunks import chunk_size, chunks
from ._kfac import _KroneckerCurvature


def _rotate(M: NDArray, Q: NDArray) -> NDArray:
    """``M @ Q`` over the last axis, as one matrix product."""
    return (M.reshape(-1, M.shape[-1]) @ Q).reshape(M.shape)


def _shared_rotated_squares(pa: NDArray, ps: NDArray) -> NDArray:
    """``sum_rows,m (Q_S^T DW Q_A)^2`` with ``DW = sum_t ds_t abar_t^T``.

    ``pa = abar Q_A`` of shape (b, T, n_in), ``ps = ds Q_S`` of shape
    (b, m, T, n_out); rows in chunks of bounded memory.
    """
    b, m, _, n_out = ps.shape
    n_in = pa.shape[-1]
    out = np.zeros((n_out, n_in))
    for t in chunks(b, chunk_size(m * n_out * n_in)):
        R = np.swapaxes(ps[t], -1, -2) @ pa[t][:, None]  # (b, m, n_out, n_in)
        out += np.einsum("bmoi,bmoi->oi", R, R)
    return out


class EKFACCurvature(_KroneckerCurvature):
    """EK-FAC: K-FAC's Kronecker eigenbasis, eigenvalues refitted per entry.

    K-FAC's eigenvalues ``lam_S,i lam_A,j`` are those of ``S (x) A``, not of
    the Gauss-Newton block it approximates.  EK-FAC keeps the eigenbasis
    ``Q = Q_S (x) Q_A`` and refits a full diagonal in it,
    ``Lambda = E[(Q_S^T DW Q_A)^2]`` over per-sample pseudo-gradients
    ``DW = ds abar^T``, in a second pass over the data.  With
    ``fisher="type2"`` (every column of the output-Hessian square root)
    ``Lambda = diag(Q^T G_l Q)``: the best diagonal in that basis, in
    Frobenius norm, of the layer's exact Gauss-Newton block ``G_l``.  For a
    layer whose weight is shared over positions (``nn.Conv2d``), ``DW`` is
    the per-sample gradient ``sum_t ds_t abar_t^T``, summed over positions
    before it is rotated and squared, so the identity holds there too,
    whatever the KFC approximation in the basis.  Damping is exact:
    ``solve`` applies ``Q_S [(Q_S^T V Q_A) / (Lambda + P_Q + lam)] Q_A^T``
    per layer.

    Parameters
    ----------
    fisher : {"mc", "empirical", "type2"}, default="mc"
        How ``ds`` is drawn (see :class:`KFACCurvature`); the second pass
        draws fresh labels for ``"mc"``.
    n_samples : int, default=1
        Sampled labels per row for ``fisher="mc"``.
    random_state : int, RandomState instance or None, default=None
        Label sampling for ``fisher="mc"``.

    Attributes
    ----------
    factors_ : list of LayerFactors
        Per layer: the K-FAC factors' eigendecompositions, the penalty, and
        ``eigenvalues``, the refitted ``Lambda`` of shape ``(n_out, n_in)``.
    layers_ : list of str
    layer_mean_eigenvalue_ : ndarray of shape (n_layers,)
        ``mean(Lambda)`` per layer, without the penalty.
    layer_damping_ : ndarray of shape (n_layers,)
        ``0.1 * layer_mean_eigenvalue_`` for ``damping="auto"`` (Grosse et
        al.), otherwise ``damping`` everywhere.
    mean_eigenvalue_ : float
    damping_ : float
    n_params_ : int

    See Also
    --------
    KFACCurvature : Kronecker eigenvalues, the cheaper approximation.
    BlockGGNCurvature : the exact layer blocks.

    Notes
    -----
    Curvature ``C = blockdiag_l(Q_l diag(Lambda_l) Q_l^T) + diag(penalty)``;
    the penalty is exact when uniform over a layer and otherwise enters as
    ``diag(Q^T P Q)`` (see :class:`KFACCurvature`).

    References
    ----------
    George, T., Laurent, C., Bouthillier, X., Ballas, N. and Vincent, P.
    "Fast Approximate Natural Gradient Descent in a Kronecker-factored
    Eigenbasis." NeurIPS 2018.
    Grosse, R. et al. "Studying Large Language Model Generalization with
    Influence Functions." arXiv:2308.03296, 2023 (eqs. 19-21).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinfluence.curvature import EKFACCurvature
    >>> from skinfluence.models import make_adapter
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((80, 3)), rng.integers(0, 3, 80)
    >>> clf = LogisticRegression(C=1.0, fit_intercept=False).fit(X, y)
    >>> adapter = make_adapter(clf, X, y)
    >>> ekfac = EKFACCurvature(fisher="type2").fit(adapter, damping=1e-3)
    >>> f = ekfac.factors_[0]
    >>> Q = f.basis()
    >>> G = adapter.hessian_matrix() - np.diag(adapter.penalty)
    >>> bool(np.allclose(f.eigenvalues.ravel(), np.diag(Q.T @ G @ Q)))
    True
    """

    def __init__(
        self, *, fisher: str = "mc", n_samples: int = 1, random_state: Any = None
    ) -> None:
        self.fisher = fisher
        self.n_samples = n_samples
        self.random_state = random_state

    def _layer_eigenvalues(self, adapter: Any, rng: Any) -> None:
        lam = [np.zeros((f.layer.n_out, f.layer.n_in)) for f in self.factors_]
        layers = [f.layer for f in self.factors_]
        for batch in self._stats(adapter, layers, rng):
            for L, f, (a, ds) in zip(lam, self.factors_, batch, strict=True):
                if a.ndim == 3:  # shared weight: rotate the summed gradient
                    L += _shared_rotated_squares(_rotate(a, f.Q_A), _rotate(ds, f.Q_S))
                    continue
                pa = (a @ f.Q_A) ** 2  # (b, n_in)
                ps = np.sum((ds @ f.Q_S) ** 2, axis=1)  # (b, n_out)
                L += ps.T @ pa
        for L, f in zip(lam, self.factors_, strict=True):
            f.eigenvalues = L / adapter.n_train
