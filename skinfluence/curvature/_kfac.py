"""K-FAC: Kronecker-factored Gauss-Newton blocks, one per linear layer."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg
from sklearn.utils import check_random_state

from ..models import KroneckerLayer, KroneckerStatistics, require
from ..utils._chunks import context_budget
from ..utils._linalg import check_dense_fits
from ..utils._sklearn_compat import Interval, StrOptions
from ._base import CurvatureBackend, check_rhs

#: ``damping="auto"`` for K-FAC and EK-FAC: this fraction of each layer's mean
#: eigenvalue (Grosse et al. 2023, section 5; kronfluence's
#: ``HEURISTIC_DAMPING_SCALE``).
KFAC_AUTO_DAMPING_SCALE = 0.1

#: The factored heuristic never damps a factor by less than this
#: (curvlinops' ``min_damping``).
MIN_FACTOR_DAMPING = 1e-8

#: Eigenvalues of ``C + damping`` at or below this fraction of the layer's
#: largest are treated as zero (pseudo-inverse).
_RCOND = 1e-12


@dataclass
class LayerFactors:
    """The eigendecomposed Kronecker factors of one layer.

    ``A = Q_A diag(eig_A) Q_A^T`` (inputs, ``n_in x n_in``) and
    ``S = Q_S diag(eig_S) Q_S^T`` (pre-activation gradients, ``n_out x
    n_out``).  ``eigenvalues`` (``n_out x n_in``) are the curvature's
    eigenvalues in the basis ``Q_S (x) Q_A``: ``eig_S eig_A^T`` for K-FAC, the
    refitted diagonal for EK-FAC.  ``penalty`` is the layer's L2 penalty laid
    out like ``[W b]``.
    """

    layer: KroneckerLayer
    eig_A: NDArray
    Q_A: NDArray
    eig_S: NDArray
    Q_S: NDArray
    penalty: NDArray
    eigenvalues: NDArray | None = None

    def projected_penalty(self) -> NDArray:
        """``diag(Q^T diag(penalty) Q)`` on the ``(n_out, n_in)`` grid."""
        return (self.Q_S**2).T @ self.penalty @ self.Q_A**2

    def basis(self) -> NDArray:
        """``Q_S (x) Q_A``, dense (small layers only)."""
        return np.kron(self.Q_S, self.Q_A)


def _eigh(M: NDArray) -> tuple[NDArray, NDArray]:
    w, Q = linalg.eigh(0.5 * (M + M.T))
    return np.clip(w, 0.0, None), Q


def _safe_inverse(denom: NDArray) -> tuple[NDArray, bool]:
    top = float(np.max(np.abs(denom), initial=0.0))
    keep = denom > _RCOND * top
    return np.where(keep, 1.0 / np.where(keep, denom, 1.0), 0.0), bool(np.all(keep))


class _KroneckerCurvature(CurvatureBackend):
    """Shared machinery of K-FAC and EK-FAC: factors, eigenbases, solves.

    Subclasses set each layer's ``eigenvalues`` (``_layer_eigenvalues``) and
    the denominators of the solve (``_denominators``).
    """

    _parameter_constraints: dict = {
        "fisher": [StrOptions({"mc", "empirical", "type2"})],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }
    _auto_damping_scale = KFAC_AUTO_DAMPING_SCALE

    def fit(
        self,
        adapter: Any,
        *,
        damping: float | str = 0.0,
        verbose: int = 0,
        memory_budget: int | None = None,
    ) -> _KroneckerCurvature:
        """Fit the Kronecker factors to ``adapter``'s training objective.

        Parameters
        ----------
        adapter : ModelAdapter
            The model adapter (see :func:`skinfluence.models.make_adapter`),
            with :class:`~skinfluence.models.KroneckerStatistics`.
        damping : float or "auto", default=0.0
            Non-negative damping added to every layer's curvature, or
            ``"auto"``: 0.1 x each layer's own mean eigenvalue.
        verbose : int, default=0
            Progress bars over the row batches when positive.
        memory_budget : int or None, default=None
            Bytes the largest layer's factors may take together (``n_in^2 +
            n_out^2 + n_in n_out`` floats); ``None``: the library defaults.

        Returns
        -------
        self
        """
        self._auto = isinstance(damping, str) and damping == "auto"
        return super().fit(
            adapter, damping=damping, verbose=verbose, memory_budget=memory_budget
        )

    # -- fit ---------------------------------------------------------------

    def _stats(self, adapter: Any, layers: list[KroneckerLayer], seed: Any):
        return adapter.layer_statistics(
            layers,
            fisher=self.fisher,
            n_samples=self.n_samples,
            random_state=seed,
            verbose=self._verbose,
        )

    def _fit(self, adapter: Any) -> None:
        name = "kfac" if isinstance(self, KFACCurvature) else "ekfac"
        require(
            adapter,
            KroneckerStatistics,
            purpose=f"curvature={name!r}",
            instead="use 'cg' or 'ggn'",
        )
        layers = adapter.kronecker_layers()
        # per layer: the two factors, their eigenbases and the eigenvalues
        # (checked against a budget the user set; none was checked before)
        if self.memory_budget_ is not None or context_budget() is not None:
            root2 = np.sqrt(2.0)
            check_dense_fits(
                self.n_params_,
                f"{name.upper()} factors",
                blocks=[int(np.ceil(root2 * ly.n_in)) for ly in layers]
                + [int(np.ceil(root2 * ly.n_out)) for ly in layers]
                + [int(np.ceil(np.sqrt(ly.n_in * ly.n_out))) for ly in layers],
                budget=self.memory_budget_,
            )
        A = [np.zeros((ly.n_in, ly.n_in)) for ly in layers]
        S = [np.zeros((ly.n_out, ly.n_out)) for ly in layers]
        positions = [1] * len(layers)
        rng = check_random_state(self.random_state)
        for batch in self._stats(adapter, layers, rng):
            for num, (Al, Sl, (a, ds)) in enumerate(zip(A, S, batch, strict=True)):
                # a weight shared over T positions (a convolution's patches):
                # A averages over positions, S sums (KFC, "expand")
                positions[num] = a.shape[1] if a.ndim == 3 else 1
                a = a.reshape(-1, a.shape[-1])
                Al += a.T @ a
                D = ds.reshape(-1, ds.shape[-1])
                Sl += D.T @ D
        n = adapter.n_train
        self.factors_ = []
        for ly, Al, Sl, T in zip(layers, A, S, positions, strict=True):
            eig_A, Q_A = _eigh(Al / (n * T))
            eig_S, Q_S = _eigh(Sl / n)
            pen = np.asarray(adapter.penalty, dtype=np.float64)[ly.index]
            pen = pen.reshape(ly.n_out, ly.n_in)
            self.factors_.append(LayerFactors(ly, eig_A, Q_A, eig_S, Q_S, pen))
        self._layer_eigenvalues(adapter, rng)
        self.layers_ = [f.layer.name for f in self.factors_]
        sizes = np.array([f.layer.size for f in self.factors_])
        self.layer_mean_eigenvalue_ = np.array(
            [f.eigenvalues.mean() for f in self.factors_]
        )
        self.mean_eigenvalue_ = float(sizes @ self.layer_mean_eigenvalue_ / sizes.sum())
        self._warn_nonuniform_penalty()

    def _layer_eigenvalues(self, adapter: Any, rng: Any) -> None:
        for f in self.factors_:
            f.eigenvalues = np.outer(f.eig_S, f.eig_A)

    def _warn_nonuniform_penalty(self) -> None:
        odd = [f.layer.name for f in self.factors_ if np.ptp(f.penalty) > 0]
        if odd:
            warnings.warn(
                f"The L2 penalty is not uniform within layer(s) {odd} (e.g. an "
                f"unpenalised bias); {type(self).__name__} adds its diagonal in the "
                "Kronecker eigenbasis, diag(Q^T P Q), which is exact only for a "
                "uniform penalty (the heuristic damping mode uses the layer's mean "
                "penalty).",
                UserWarning,
                stacklevel=4,
            )

    # -- factorize / solve -------------------------------------------------

    def _factorize(self) -> None:
        if self._auto:
            self.layer_damping_ = self._auto_damping_scale * self.layer_mean_eigenvalue_
        else:
            self.layer_damping_ = np.full(len(self.factors_), self.damping_)
        self._inv = []
        singular = []
        for f, lam in zip(self.factors_, self.layer_damping_, strict=True):
            inv, ok = _safe_inverse(self._denominators(f, float(lam)))
            self._inv.append(inv)
            if not ok:
                singular.append(f.layer.name)
        if singular:
            warnings.warn(
                f"The {type(self).__name__} curvature is singular in layer(s) "
                f"{singular}; using its pseudo-inverse there. Add damping (e.g. "
                "damping='auto').",
                UserWarning,
                stacklevel=4,
            )

    def _denominators(self, f: LayerFactors, lam: float) -> NDArray:
        """Exact damping: eigenvalues of ``C_l + lam I`` in the Kronecker basis."""
        return f.eigenvalues + f.projected_penalty() + lam

    def _solve(self, V: NDArray) -> NDArray:
        out = np.empty_like(V)
        k = V.shape[1]
        for f, inv in zip(self.factors_, self._inv, strict=True):
            ly = f.layer
            Vl = V[ly.index].T.reshape(k, ly.n_out, ly.n_in)
            Y = f.Q_S.T @ Vl @ f.Q_A
            out[ly.index] = (f.Q_S @ (Y * inv) @ f.Q_A.T).reshape(k, -1).T
        return out

    def solve_width(self, adapter: Any) -> int:
        """Per column: the layer block, its rotation and the solution."""
        return 3 * int(adapter.n_params)

    def half_solve(self, V: NDArray) -> NDArray:
        """``W`` with ``W^T W = V^T (C + damping I)^{-1} V``: per layer the
        rotated block ``Q_S^T V_l Q_A`` times the square root of the inverse
        denominators (non-negative: pseudo-inverse entries are 0).

        Parameters
        ----------
        V : ndarray of shape (n_params, k)

        Returns
        -------
        W : ndarray of shape (n_params, k)
        """
        V = check_rhs(self, V)
        k = V.shape[1]
        out = []
        for f, inv in zip(self.factors_, self._inv, strict=True):
            ly = f.layer
            Vl = V[ly.index].T.reshape(k, ly.n_out, ly.n_in)
            Y = f.Q_S.T @ Vl @ f.Q_A
            out.append((Y * np.sqrt(inv)).reshape(k, -1).T)
        return np.vstack(out)

    def curvature_matrix(self) -> NDArray:
        """The dense approximation ``C`` (no damping) in the adapter's order.

        Block-diagonal over layers: ``Q (diag(eigenvalues) + diag(Q^T P Q))
        Q^T`` with ``Q = Q_S (x) Q_A`` and ``P`` the penalty.  With exact
        damping, :meth:`solve` applies ``(C + damping I)^{-1}``.  For
        diagnostics on small models: ``n_params^2`` memory.

        Returns
        -------
        C : ndarray of shape (n_params, n_params)
        """
        check_dense_fits(self.n_params_, f"{type(self).__name__} matrix")
        C = np.zeros((self.n_params_, self.n_params_))
        for f in self.factors_:
            Q = f.basis()
            d = (f.eigenvalues + f.projected_penalty()).ravel()
            C[np.ix_(f.layer.index, f.layer.index)] = (Q * d) @ Q.T
        return C


class KFACCurvature(_KroneckerCurvature):
    """K-FAC: each linear layer's Gauss-Newton block as ``S (x) A``.

    For a layer ``s = W a + b`` with homogeneous input ``abar = [a, 1]``,
    ``A = E[abar abar^T]`` and ``S = E[ds ds^T]`` (``ds`` the pseudo-gradient
    of the loss with respect to ``s``), averaged over the training rows; the
    layer's block of the curvature is ``S (x) A`` (``[W b]`` row-major) plus
    the L2 penalty, and layers are independent (block-diagonal).  Both factors
    are eigendecomposed once at fit; a solve is two small matrix products per
    side and layer.

    Supported models: torch networks whose parameters all belong to
    ``nn.Linear`` and ``nn.Conv2d`` (``groups=1``) layers, each applied once
    per forward pass (activations, pooling and other parameter-free modules
    anywhere), and scikit-learn linear models (one layer).  A layer whose
    weight is shared over ``T`` positions of a row (a convolution's input
    patches, or an ``nn.Linear`` on ``(batch, ..., features)``) uses the KFC
    approximation of Grosse & Martens (2016), normalised as K-FAC-expand
    (Eschenhagen et al. 2023): ``A`` averages ``abar_t abar_t^T`` over rows
    and positions, ``S`` sums ``ds_t ds_t^T`` over positions and averages
    over rows.  Their product is the layer's Gauss-Newton block when the
    output derivatives at different positions are uncorrelated and
    position-independent (exact, e.g., when every output of a convolution is
    a least-squares target), and an approximation otherwise; putting ``1/T``
    on ``A`` keeps its scale that of one input patch, as for a linear layer.

    Parameters
    ----------
    fisher : {"mc", "empirical", "type2"}, default="mc"
        How ``ds`` is drawn: ``"mc"`` back-propagates labels sampled from the
        model (the true Fisher, ``n_samples`` per row); ``"empirical"`` the
        true labels (the empirical Fisher); ``"type2"`` the columns of a
        symmetric square root of the output-space loss Hessian (exact
        per-sample Gauss-Newton; ``K`` backward vectors per row).
    n_samples : int, default=1
        Sampled labels per row for ``fisher="mc"``.
    damping_mode : {"exact", "heuristic"}, default="exact"
        ``"exact"``: ``(S (x) A + P + lam I)^{-1}`` through the factors'
        eigendecompositions (eigenvalues ``lam_S,i lam_A,j + lam``).
        ``"heuristic"``: Martens & Grosse's factored damping,
        ``(S + sqrt(lam)/pi I)^{-1} (x) (A + pi sqrt(lam) I)^{-1}`` with
        ``pi = sqrt((tr A / n_in) / (tr S / n_out))``, each factor's damping at
        least ``1e-8``; here ``lam`` is the damping plus the layer's mean
        penalty.
    random_state : int, RandomState instance or None, default=None
        Label sampling for ``fisher="mc"``.

    Attributes
    ----------
    factors_ : list of LayerFactors
        Per layer: eigenvalues and eigenvectors of ``A`` and ``S``, the
        penalty, and the eigenvalues ``eig_S eig_A^T`` of ``S (x) A``.
    layers_ : list of str
        Layer (module) names.
    layer_mean_eigenvalue_ : ndarray of shape (n_layers,)
        ``mean(eig_S) * mean(eig_A)``, without the penalty.
    layer_damping_ : ndarray of shape (n_layers,)
        The damping of each layer: ``0.1 * layer_mean_eigenvalue_`` for
        ``damping="auto"`` (Grosse et al.), otherwise ``damping`` everywhere.
    mean_eigenvalue_ : float
        Parameter-weighted mean of ``layer_mean_eigenvalue_``.
    damping_ : float
        The damping asked for; with ``"auto"``, ``0.1 * mean_eigenvalue_``,
        the parameter-weighted mean of ``layer_damping_``.
    n_params_ : int

    See Also
    --------
    EKFACCurvature : the same eigenbasis with refitted eigenvalues.
    BlockGGNCurvature : the exact layer blocks K-FAC approximates.

    Notes
    -----
    The training objective is ``J = (1/n) sum_i loss_i + (1/2) theta^T
    diag(penalty) theta``; its curvature here is ``C = blockdiag_l(S_l (x)
    A_l) + diag(penalty)``.  A penalty that is uniform over a layer's weight
    and bias is exact in the Kronecker eigenbasis (it only shifts the
    eigenvalues); a non-uniform one (an unpenalised bias, per-tensor weight
    decay) enters through its diagonal in that basis, ``diag(Q^T P Q)``, with
    a warning.  For scikit-learn multinomial models the flat directions of
    the symmetric parametrisation are not added (they are null directions of
    ``S`` already and gradients are orthogonal to them).

    ``fisher="type2"`` makes K-FAC exact for a single linear layer with a
    loss whose output Hessian does not depend on the sample (least squares).

    References
    ----------
    Martens, J. and Grosse, R. "Optimizing Neural Networks with
    Kronecker-factored Approximate Curvature." ICML 2015.
    Grosse, R. and Martens, J. "A Kronecker-factored approximate Fisher
    matrix for convolution layers." ICML 2016.
    Eschenhagen, R., Immer, A., Turner, R., Schneider, F. and Hennig, P.
    "Kronecker-Factored Approximate Curvature for Modern Neural Network
    Architectures." NeurIPS 2023.
    Grosse, R. et al. "Studying Large Language Model Generalization with
    Influence Functions." arXiv:2308.03296, 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> from skinfluence.curvature import KFACCurvature
    >>> from skinfluence.models import make_adapter
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((50, 3)), rng.standard_normal(50)
    >>> adapter = make_adapter(Ridge(alpha=0.0).fit(X, y), X, y)
    >>> kfac = KFACCurvature(fisher="type2").fit(adapter)
    >>> bool(np.allclose(kfac.curvature_matrix(), adapter.hessian_matrix()))
    True
    """

    _parameter_constraints: dict = {
        **_KroneckerCurvature._parameter_constraints,
        "damping_mode": [StrOptions({"exact", "heuristic"})],
    }

    def __init__(
        self,
        *,
        fisher: str = "mc",
        n_samples: int = 1,
        damping_mode: str = "exact",
        random_state: Any = None,
    ) -> None:
        self.fisher = fisher
        self.n_samples = n_samples
        self.damping_mode = damping_mode
        self.random_state = random_state

    def _denominators(self, f: LayerFactors, lam: float) -> NDArray:
        if self.damping_mode == "exact":
            return super()._denominators(f, lam)
        dA, dS = heuristic_factor_damping(f, lam + float(f.penalty.mean()))
        return np.outer(f.eig_S + dS, f.eig_A + dA)


def heuristic_factor_damping(f: LayerFactors, lam: float) -> tuple[float, float]:
    """Martens & Grosse's split of ``lam`` over the factors: ``(d_A, d_S)``.

    ``pi = sqrt(mean eig(A) / mean eig(S))``; ``d_A = pi sqrt(lam)`` and
    ``d_S = sqrt(lam) / pi``, each at least ``MIN_FACTOR_DAMPING``.
    """
    mA, mS = float(f.eig_A.mean()), float(f.eig_S.mean())
    pi = np.sqrt(mA / mS) if mA > 0 and mS > 0 else 1.0
    root = np.sqrt(max(lam, 0.0))
    return max(pi * root, MIN_FACTOR_DAMPING), max(root / pi, MIN_FACTOR_DAMPING)
