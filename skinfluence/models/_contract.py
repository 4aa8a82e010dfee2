"""The model contract: one core interface and the optional capabilities.

Every adapter implements :class:`ModelAdapter`, the core that every
curvature backend and influence question can work with: parameters,
per-sample losses and gradients, the objective gradient, curvature-matrix
products, the penalty, the flat directions, the classes, the row weights and
which rows of the fit ``X`` were trained on.

What only some models can do is a separate capability, each a small
:class:`typing.Protocol`:

* :class:`DenseCurvature`: ``"exact"``/``"ggn"`` (else assembled from
  operator products);
* :class:`HessianDiagonal`, :class:`GGNDiagonal`: ``"diagonal"``, the mean
  eigenvalues behind ``damping="auto"`` (else a Hutchinson estimate);
* :class:`MinibatchCurvature`: ``"lissa"``;
* :class:`KroneckerStatistics`: ``"kfac"``, ``"ekfac"``, ``"blockggn"``;
* :class:`SubsetHessian`: ``group_influence(method="newton")``;
* :class:`Reparametrizable`: ``method="vm"``/``"fvm"`` (fine-tuning);
* :class:`Retrainable`: ``loo_change``, ``lds_ground_truth``;
* :class:`ResponseFunction`: ``pbrf_change``, ``proximal_change``;
* :class:`InputGradients`: ``InfluenceScorer.input_perturbation``;
* :class:`TrainingCheckpoints`: ``method="tracin"``;
* :class:`RowCurvature`: ``method="newton"``, ``diagnostics()`` (leverage);
* :class:`ResidualDiagnostics`, :class:`NamedParameters`: the residual and
  ``dfbeta_<name>`` columns of ``diagnostics()``;
* :class:`GradientProducts`: scores on sparse features without dense
  gradient blocks;
* :class:`CurvatureSampler`: sketched self-influence (``k`` solves instead
  of one per training row).

One optional attribute steers defaults: ``is_convex`` (``True`` when
absent) says whether the training objective is convex in the parameters, so
its Hessian is positive semi-definite everywhere.  ``TorchAdapter`` sets it
to ``False``: ``curvature="auto"`` then picks the Gauss-Newton family
(``"ggn"``, or CG on Gauss-Newton products for large networks), which stays
positive semi-definite on a network trained by SGD or Adam, away from a
minimum.  A third-party adapter of a non-convex model should set it too.

Backends and questions ask for a capability once, through :func:`require`,
which raises a ``TypeError``
(:class:`~skinfluence.exceptions.MissingCapabilityError`) naming the model,
the missing capability, who has it and what to use instead.  Optional fast
paths (a closed-form diagonal) are asked with ``isinstance(adapter,
Capability)`` and fall back to the core.

Why ``typing.Protocol`` rather than abstract base classes: an adapter for a
new model family should be one file that implements methods, not a class
that must inherit from ours; structural typing lets ``isinstance`` tell what
an object can do from what it has, and the protocols double as the
documentation of each member's signature.  ``runtime_checkable`` checks that
the members exist, not their signatures; the tests check the behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from numpy.typing import ArrayLike, NDArray
from scipy.sparse.linalg import LinearOperator

from ..exceptions import MissingCapabilityError


@runtime_checkable
class ModelAdapter(Protocol):
    """The core contract: what influence asks of any fitted model.

    The training objective is

    ``J(theta) = (1/n) sum_i w_i loss_i(theta) + (1/2) theta^T diag(penalty) theta``

    with ``n = n_train`` and ``w_i = weights[i]`` (class and sample weights;
    ones when there are none).  Arrays are float64 unless an adapter says
    otherwise; ``p = n_params``.

    Attributes
    ----------
    n_params : int
        Length of the flat parameter vector.
    n_train : int
        Training rows the objective sums over.
    n_outputs : int
        Model outputs per row (logits or targets); sizes memory blocks.
    is_classifier : bool
    classes : ndarray of shape (n_classes,) or None
        Class labels (classifiers), in the order of ``train_grads(labels=k)``.
    penalty : ndarray of shape (n_params,)
        The L2 strength of each parameter on the mean-loss scale.
    null_basis : ndarray of shape (n_params, k)
        Orthonormal directions along which ``J`` is exactly flat (``k = 0``
        when there are none); the curvature operators include their
        projector, so solves return the minimum-norm answer.
    weights : ndarray of shape (n_train,)
        ``w_i`` above.
    train_indices : ndarray of int of shape (n_train,)
        The rows of the ``X`` given to :func:`make_adapter` that were trained
        on (all of them unless the estimator held rows out).
    removal_gradient : {"loss", "total"}
        The training gradient whose influence matches refitting the model
        without a row at its own hyper-parameters: ``"loss"`` when the
        penalty is on the sum scale (the mean-scale penalty grows as
        ``1/(n-1)`` on removal, as ``LogisticRegression``'s ``C``),
        ``"total"`` when it is on the mean scale (the penalty stays, as
        ``SGDClassifier``'s ``alpha``).  ``InfluenceScorer(train_gradient=
        "auto")`` uses it.

    Notes
    -----
    Optional: ``is_convex : bool`` (``True`` when absent), whether ``J`` is
    convex; ``False`` makes ``curvature="auto"`` use the Gauss-Newton matrix
    (see the module docstring).
    """

    n_params: int
    n_train: int
    n_outputs: int
    is_classifier: bool
    classes: NDArray | None
    penalty: NDArray
    null_basis: NDArray
    weights: NDArray
    train_indices: NDArray
    removal_gradient: str

    def params(self) -> NDArray:
        """The flat parameter vector, shape (p,)."""

    def loss(self, X: ArrayLike, y: ArrayLike) -> NDArray:
        """Per-sample loss (no penalty, no weight), shape (m,)."""

    def prediction(self, X: ArrayLike) -> NDArray:
        """Scalar prediction per row, shape (m,): ``y_hat`` (regression) or
        the log-probability of the predicted class."""

    def loss_grads(self, X: ArrayLike, y: ArrayLike) -> NDArray:
        """Per-sample gradients of :meth:`loss`, shape (m, p)."""

    def prediction_grads(self, X: ArrayLike) -> NDArray:
        """Per-sample gradients of :meth:`prediction`, shape (m, p)."""

    def train_grads(
        self, rows: Any = slice(None), *, total: bool = False, labels: Any = None
    ) -> NDArray:
        """Weighted training gradients ``w_i grad loss_i`` at ``rows``, (b, p).

        ``total=True`` adds ``penalty * theta`` to each row; ``labels`` (class
        indices) relabels the rows first (classifiers).
        """

    def train_prediction_grads(self, rows: Any = slice(None)) -> NDArray:
        """:meth:`prediction_grads` at training rows, shape (b, p)."""

    def objective_grad(self) -> NDArray:
        """``grad J`` at the fitted parameters, shape (p,)."""

    def hessian_operator(self) -> LinearOperator:
        """The Hessian of ``J`` (plus the null-space projector), (p, p)."""

    def ggn_operator(self) -> LinearOperator:
        """The Gauss-Newton matrix of ``J`` (the Hessian for a model linear in
        its parameters), (p, p)."""


# ---------------------------------------------------------------------------
# Capabilities
# ---------------------------------------------------------------------------


@runtime_checkable
class DenseCurvature(Protocol):
    """Dense curvature matrices, cheaper than ``p`` operator products."""

    def hessian_matrix(self) -> NDArray:
        """Dense ``H`` of shape (p, p), as :meth:`ModelAdapter.hessian_operator`."""

    def ggn_matrix(self) -> NDArray:
        """Dense Gauss-Newton matrix of shape (p, p)."""


@runtime_checkable
class HessianDiagonal(Protocol):
    """The exact diagonal of the Hessian operator."""

    def hessian_diagonal(self) -> NDArray:
        """``diag(H)`` of shape (p,)."""


@runtime_checkable
class GGNDiagonal(Protocol):
    """The exact diagonal of the Gauss-Newton operator."""

    def ggn_diagonal(self) -> NDArray:
        """``diag(G)`` of shape (p,)."""


@runtime_checkable
class MinibatchCurvature(Protocol):
    """Curvature products with the data term averaged over some rows."""

    def hessian_matvec(self, V: NDArray, rows: Any = None) -> NDArray:
        """``H_rows V`` for ``V`` of shape (p,) or (p, k); penalty included."""

    def ggn_matvec(self, V: NDArray, rows: Any = None) -> NDArray:
        """``G_rows V``, as :meth:`hessian_matvec`."""


@runtime_checkable
class KroneckerStatistics(Protocol):
    """Per-layer structure for Kronecker-factored and block curvature.

    A model made of linear layers ``s = W a + b`` (a scikit-learn linear
    model is one; a convolution is one applied to each input patch) exposes
    each layer's homogeneous inputs ``abar = [a, 1]`` and output
    pseudo-gradients ``ds``, from which K-FAC builds
    ``E[ds ds^T] (x) E[abar abar^T]`` per layer.
    """

    def kronecker_layers(self) -> list:
        """The linear layers as :class:`~skinfluence.models.KroneckerLayer`,
        covering every parameter (a ``TypeError``/``ValueError`` says which
        parameters are not in one)."""

    def layer_statistics(
        self,
        layers: list,
        *,
        fisher: str = "mc",
        n_samples: int = 1,
        random_state: Any = None,
        verbose: int = 0,
    ) -> Iterator[list[tuple[NDArray, NDArray]]]:
        """Stream, row batch by row batch, ``(abar, ds)`` for every layer.

        ``fisher`` is one of ``FISHER_TYPES``: ``"type2"`` back-propagates the
        columns of a symmetric square root of the output-space loss Hessian,
        ``"mc"`` ``n_samples`` labels drawn from the model (scaled by
        ``1/sqrt(n_samples)``), ``"empirical"`` the true labels.  Each batch
        is a list with one ``(abar, ds)`` per layer: ``abar`` of shape
        ``(b, n_in)`` and ``ds`` of shape ``(b, m, n_out)``, so that
        ``(1/n) sum_rows sum_m (ds ds^T) (x) (abar abar^T)`` estimates the
        layer's Gauss-Newton block (row weights included).  A layer whose
        weight is shared over ``T`` positions of a row (a convolution's
        patches) adds a position axis: ``abar`` of shape ``(b, T, n_in)``
        and ``ds`` of shape ``(b, m, T, n_out)``, the per-sample gradient
        being ``sum_t ds_t abar_t^T``.
        """

    def parameter_blocks(self, by: str = "layer") -> list[tuple[str, NDArray]]:
        """Disjoint blocks of flat indices, per layer or per tensor."""

    def ggn_blocks(self, blocks: list[NDArray], *, verbose: int = 0) -> list[NDArray]:
        """Dense diagonal blocks ``G[idx, idx]`` of the Gauss-Newton matrix."""


@runtime_checkable
class SubsetHessian(Protocol):
    """The summed Hessian of any subset of training losses, dense."""

    def hessian_matrix(self) -> NDArray:
        """Dense ``H`` of shape (p, p)."""

    def data_hessian_sum(self, rows: Any = slice(None)) -> NDArray:
        """``sum_{i in rows} w_i Hessian(loss_i)`` of shape (p, p)."""


@runtime_checkable
class Reparametrizable(Protocol):
    """The same model at other parameters or on other data (fine-tuning)."""

    def with_data(self, X: ArrayLike, y: ArrayLike) -> Any:
        """The same model and parameters with ``(X, y)`` as training set."""

    def with_params(self, theta: NDArray) -> Any:
        """The same model and data at the parameters ``theta``."""

    def batch_objective_grad(self, theta: NDArray, rows: Any) -> NDArray:
        """``grad J`` at ``theta`` with the data term averaged over ``rows``."""

    def param_blocks(self) -> list[tuple[slice, tuple[int, ...]]]:
        """``(slice of the flat vector, shape)`` per parameter tensor."""


@runtime_checkable
class Retrainable(Protocol):
    """Actual refits on a subset of the training rows (ground truth)."""

    def retrain(
        self, keep: NDArray, *, warm_start: bool = True, random_state: Any = None
    ) -> Any:
        """The adapter of the model refitted on the ``keep`` rows."""


@runtime_checkable
class ResponseFunction(Protocol):
    """Minimisers of response objectives around the fit (PBRF, proximal)."""

    def response(
        self, remove: int | None, *, damping: float, kind: str = "pbrf"
    ) -> Any:
        """The adapter at the minimiser of the ``kind`` response objective."""


@runtime_checkable
class InputGradients(Protocol):
    """Mixed derivatives ``d/dx_i <q, grad_theta loss_i>``."""

    def input_grad_products(self, Q: NDArray, rows: Any = slice(None)) -> NDArray:
        """Shape ``(m, b, *input_shape)`` for query vectors ``Q`` of shape (m, p)."""


@runtime_checkable
class TrainingCheckpoints(Protocol):
    """Parameters saved along training, and a way to evaluate at them."""

    checkpoints: Sequence[tuple[NDArray, float]]

    def with_params(self, theta: NDArray) -> Any:
        """The same model and data at the parameters ``theta``."""


@runtime_checkable
class GradientProducts(Protocol):
    """Training gradients multiplied into a block without forming them.

    A linear model on sparse features holds ``g_i = r_i (x) x~_i``; the
    product ``G Q`` is then a sparse-times-dense product per output instead
    of a dense ``(b, p)`` gradient block.
    """

    def train_grad_products(
        self, Q: NDArray, rows: Any = slice(None), *, total: bool = False
    ) -> NDArray:
        """``train_grads(rows, total=total) @ Q`` of shape (b, k) for ``Q``
        of shape (p, k)."""

    def train_grad_sq_norms(self, rows: Any = slice(None)) -> NDArray:
        """``||train_grads(rows)[i]||^2`` of shape (b,), without the block
        (``||r_i||^2 ||x~_i||^2`` for an outer-product gradient)."""


@runtime_checkable
class CurvatureSampler(Protocol):
    """Gaussian vectors whose covariance is the curvature (sketched solves).

    ``z = sum_i J_i^T M_i^{1/2} e_i / sqrt(n) + sqrt(penalty) * u`` (plus the
    flat-direction projector) with standard normal ``e_i`` and ``u`` has
    covariance ``C``; then ``y = (C + damping I)^{-1} (z + sqrt(damping) v)``
    has covariance ``(C + damping I)^{-1}`` and ``E[(g^T y)^2] = g^T (C +
    damping I)^{-1} g``: self-influence from ``k`` solves instead of ``n``.
    """

    def curvature_sample(self, n_probes: int, random_state: Any = None) -> NDArray:
        """Shape (p, n_probes): independent draws from ``N(0, C)``, ``C`` the
        curvature the adapter's ``hessian_operator`` applies (damping
        excluded); raises ``ValueError`` when ``C`` has no such factor (an
        indefinite Hessian)."""


#: Who has what, for error messages.
@runtime_checkable
class RowCurvature(Protocol):
    """Each training row's own curvature block, ``J_i^T M_i J_i``."""

    def row_curvature(self, rows: Any = slice(None)) -> tuple[NDArray, NDArray]:
        """Output Jacobians ``J`` (b, K, p) and weighted output Hessians
        ``M`` (b, K, K) of the rows (the Gauss-Newton block of each row)."""


@runtime_checkable
class ResidualDiagnostics(Protocol):
    """A scalar residual per row (regression diagnostics)."""

    def residual_parts(self) -> dict[str, Any]:
        """``response``, ``pearson``, ``dmu_dz`` (n,) and ``fixed_dispersion``;
        raises ``ValueError`` for a model with several outputs."""


@runtime_checkable
class NamedParameters(Protocol):
    """Readable parameter names (``diagnostics()``'s ``dfbeta_`` columns)."""

    def parameter_names(self, feature_names: Any = None) -> list[str]:
        """A name per parameter, from the model's input feature names."""


_LINEAR = "LinearAdapter (scikit-learn linear models and GLMs)"
_TORCH = "TorchAdapter (torch modules, skorch nets)"
_BOTH = f"{_LINEAR} and {_TORCH}"

#: What each capability is, and which built-in adapters have it.
_DESCRIPTIONS: dict[type, tuple[str, str]] = {
    ModelAdapter: (
        "the core model-adapter interface",
        "all adapters returned by make_adapter",
    ),
    DenseCurvature: ("dense Hessian and Gauss-Newton matrices", _BOTH),
    HessianDiagonal: ("a closed-form Hessian diagonal", _LINEAR),
    GGNDiagonal: ("an exact Gauss-Newton diagonal", _BOTH),
    MinibatchCurvature: (
        "minibatch curvature products (hessian_matvec/ggn_matvec with rows)",
        _BOTH,
    ),
    KroneckerStatistics: (
        "Kronecker layer statistics",
        f"{_LINEAR} and TorchAdapter of networks made of nn.Linear layers",
    ),
    SubsetHessian: ("a closed-form Hessian of any subset of training losses", _LINEAR),
    Reparametrizable: (
        "re-parametrisation for fine-tuning (with_data, with_params, "
        "batch_objective_grad, param_blocks)",
        _BOTH,
    ),
    Retrainable: ("retraining on a subset of rows (retrain)", _BOTH),
    ResponseFunction: ("response-function refits (response: PBRF, proximal)", _BOTH),
    InputGradients: (
        "input gradients of the training gradients (input_grad_products)",
        _BOTH,
    ),
    RowCurvature: (
        "each row's own curvature block (row_curvature)",
        f"{_BOTH} and HuberAdapter",
    ),
    ResidualDiagnostics: (
        "scalar residuals (residual_parts)",
        f"{_LINEAR} and HuberAdapter",
    ),
    NamedParameters: ("parameter names (parameter_names)", f"{_BOTH} and HuberAdapter"),
    GradientProducts: (
        "training-gradient products and norms without dense gradients "
        "(train_grad_products, train_grad_sq_norms)",
        f"{_LINEAR} and HuberAdapter",
    ),
    CurvatureSampler: (
        "Gaussian draws with the curvature as covariance (curvature_sample)",
        _LINEAR,
    ),
    TrainingCheckpoints: (
        "training checkpoints (checkpoints, with_params)",
        "TorchAdapter of skorch nets fitted with the TracInCheckpoints callback",
    ),
}


def protocol_members(capability: type) -> list[str]:
    """The member names a capability protocol declares, in declaration order."""
    names: list[str] = []
    for klass in reversed(capability.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        for name in [*getattr(klass, "__annotations__", {}), *vars(klass)]:
            if not name.startswith("_") and name not in names:
                names.append(name)
    return names


def describe(adapter: Any) -> str:
    """The adapter's own description when it has one, else its class name."""
    if type(adapter).__repr__ is object.__repr__:
        return type(adapter).__name__
    return repr(adapter)


def require(
    adapter: Any, capability: type, *, purpose: str, instead: str | None = None
) -> Any:
    """Return ``adapter`` when it has ``capability``; else raise ``TypeError``.

    Parameters
    ----------
    adapter : object
        A model adapter.
    capability : Protocol class
        :class:`ModelAdapter` or one of the capability protocols of
        :mod:`skinfluence.models`.
    purpose : str
        What needs it, as the user asked for it (``"curvature='kfac'"``).
    instead : str or None, default=None
        What to use instead, appended as ``": use ..."``.

    Returns
    -------
    adapter : object
        The same object, for chaining.

    Raises
    ------
    MissingCapabilityError
        A ``TypeError`` (and ``ValueError``) naming the model, the missing
        capability and its members, who has it and ``instead``.

    Examples
    --------
    >>> from skinfluence.models import KroneckerStatistics, require
    >>> class Bare:
    ...     pass
    >>> try:
    ...     require(Bare(), KroneckerStatistics, purpose="curvature='kfac'",
    ...             instead="use 'cg' or 'ggn'")
    ... except TypeError as exc:
    ...     print(exc)
    curvature='kfac' needs Kronecker layer statistics, which LinearAdapter \
(scikit-learn linear models and GLMs) and TorchAdapter of networks made of \
nn.Linear layers have; Bare does not (it lacks kronecker_layers, \
layer_statistics, parameter_blocks, ggn_blocks): use 'cg' or 'ggn'.
    """
    if isinstance(adapter, capability):
        return adapter
    what, who = _DESCRIPTIONS.get(capability, (capability.__name__, "some models"))
    missing = [m for m in protocol_members(capability) if not hasattr(adapter, m)]
    msg = (
        f"{purpose} needs {what}, which {who} have; {describe(adapter)} does not "
        f"(it lacks {', '.join(missing)})"
    )
    raise MissingCapabilityError(msg + (f": {instead}." if instead else "."))
