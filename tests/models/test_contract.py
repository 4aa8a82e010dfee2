"""The model contract: a new model family in one file, and the capabilities.

The first half plugs in a model family the library has never seen -- Poisson
regression with a log link, written from scratch in numpy -- through
``make_adapter.register``, implementing the core :class:`ModelAdapter` only,
and checks its influence against actual refits.  The second half checks the
capability protocols of the built-in adapters and the errors that name what
is missing.
"""

import ast
import pathlib
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.sparse.linalg import LinearOperator
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LogisticRegression, Ridge

from skinfluence import InfluenceScorer, NoisyLabelDetector
from skinfluence.curvature import CGCurvature
from skinfluence.evaluation import loo_change, pbrf_change
from skinfluence.exceptions import MissingCapabilityError
from skinfluence.models import (
    DenseCurvature,
    GGNDiagonal,
    HessianDiagonal,
    InputGradients,
    KroneckerStatistics,
    MinibatchCurvature,
    ModelAdapter,
    Reparametrizable,
    ResponseFunction,
    Retrainable,
    SubsetHessian,
    TrainingCheckpoints,
    make_adapter,
    require,
)

# -- a model family in one file: Poisson regression, core interface only -------


class PoissonGLM(RegressorMixin, BaseEstimator):
    """``sum_i [exp(z_i) - y_i z_i] + (alpha/2) ||w||^2``, ``z = X w + b``.

    Fitted by Newton's method to a gradient norm of 1e-12 (the intercept is
    not penalised), so refits are a ground truth.
    """

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        Xt = np.hstack([X, np.ones((len(X), 1))])
        pen = np.append(np.full(X.shape[1], self.alpha), 0.0)
        theta = np.zeros(Xt.shape[1])
        theta[-1] = np.log(np.mean(y))
        for _ in range(100):
            mu = np.exp(Xt @ theta)
            g = Xt.T @ (mu - y) + pen * theta
            if np.linalg.norm(g) < 1e-12:
                break
            H = Xt.T @ (mu[:, None] * Xt) + np.diag(pen)
            theta -= np.linalg.solve(H, g)
        self.coef_, self.intercept_ = theta[:-1], theta[-1]
        return self

    def predict(self, X):
        return np.exp(X @ self.coef_ + self.intercept_)


class PoissonAdapter:
    """The core :class:`ModelAdapter` of a fitted :class:`PoissonGLM`.

    Mean-loss scale: ``J = (1/n) sum_i loss_i + (1/2) theta^T diag(alpha/n, 0)
    theta``; the Hessian is ``X~^T diag(mu) X~ / n + diag(penalty)`` (the
    Gauss-Newton matrix too: the log link is canonical).
    """

    is_classifier, classes, n_outputs = False, None, 1
    removal_gradient = "loss"  # alpha is on the sum scale

    def __init__(self, est, X, y, *, sample_weight=None, **ignored):
        if sample_weight is not None:
            raise ValueError("PoissonAdapter does not support sample_weight.")
        self.Xt = np.hstack([np.asarray(X, dtype=float), np.ones((len(X), 1))])
        self.y = np.asarray(y, dtype=float)
        self.theta = np.append(est.coef_, est.intercept_)
        self.n_train, self.n_params = self.Xt.shape
        self.penalty = np.append(np.full(X.shape[1], est.alpha), 0.0) / self.n_train
        self.null_basis = np.zeros((self.n_params, 0))
        self.weights = np.ones(self.n_train)
        self.train_indices = np.arange(self.n_train)

    def _aug(self, X):
        return np.hstack([np.asarray(X, dtype=float), np.ones((len(X), 1))])

    def params(self):
        return self.theta.copy()

    def loss(self, X, y):
        z = self._aug(X) @ self.theta
        return np.exp(z) - np.asarray(y) * z

    def prediction(self, X):
        return self._aug(X) @ self.theta  # the linear predictor log(mu)

    def loss_grads(self, X, y):
        Xt = self._aug(X)
        return (np.exp(Xt @ self.theta) - np.asarray(y))[:, None] * Xt

    def prediction_grads(self, X):
        return self._aug(X)

    def train_grads(self, rows=slice(None), *, total=False, labels=None):
        Xt = self.Xt[rows]
        G = (np.exp(Xt @ self.theta) - self.y[rows])[:, None] * Xt
        return G + self.penalty * self.theta if total else G

    def train_prediction_grads(self, rows=slice(None)):
        return self.Xt[rows]

    def objective_grad(self):
        return self.train_grads().mean(axis=0) + self.penalty * self.theta

    def hessian_operator(self):
        mu = np.exp(self.Xt @ self.theta)

        def matmat(V):
            V = V.reshape(self.n_params, -1)
            HV = self.Xt.T @ (mu[:, None] * (self.Xt @ V)) / self.n_train
            return HV + self.penalty[:, None] * V

        p = self.n_params
        return LinearOperator((p, p), matvec=matmat, matmat=matmat, dtype=float)

    ggn_operator = hessian_operator


@make_adapter.register(PoissonGLM)
def _poisson_adapter(estimator, X, y, **kwargs):
    return PoissonAdapter(estimator, X, y, **kwargs)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = rng.poisson(np.exp(0.3 * X @ np.array([1.0, -0.5, 0.8, 0.0]) + 0.5))
    return X[:50], y[:50].astype(float), X[50:], y[50:].astype(float)


def _loo_params(X, y, alpha):
    ref = PoissonGLM(alpha).fit(X, y)
    theta = np.append(ref.coef_, ref.intercept_)
    out = []
    for i in range(len(X)):
        m = PoissonGLM(alpha).fit(np.delete(X, i, 0), np.delete(y, i))
        out.append(np.append(m.coef_, m.intercept_) - theta)
    return np.array(out)


@pytest.mark.parametrize("curvature", ["exact", "cg", "ggn", "lowrank"])
def test_a_core_only_family_matches_actual_refits(counts, curvature):
    # Influence of a family plugged in through make_adapter.register, with no
    # capability beyond the core, against leave-one-out refits by its own fit.
    X, y, Xq, yq = counts
    scorer = InfluenceScorer(PoissonGLM(alpha=1.0), curvature=curvature).fit(X, y)
    assert scorer.grad_norm_ < 1e-10
    predicted = scorer.parameter_change(range(len(X)))
    actual = _loo_params(X, y, 1.0)
    assert np.corrcoef(predicted.ravel(), actual.ravel())[0, 1] > 0.99
    # query losses: the change after each actual refit vs S / n
    S = scorer.influence(Xq, yq)
    theta = scorer.adapter_.params()
    base = _poisson_loss(theta, Xq, yq)
    changes = np.array([_poisson_loss(theta + d, Xq, yq) - base for d in actual]).T
    assert np.corrcoef((S / len(X)).ravel(), changes.ravel())[0, 1] > 0.99


def _poisson_loss(theta, X, y):
    z = X @ theta[:-1] + theta[-1]
    return np.exp(z) - y * z


def test_a_core_only_family_gets_a_closed_form_free_curvature_right(counts):
    # Exact and CG agree, and the diagonal backend's Hutchinson fallback is
    # near the exact diagonal (no closed form was given).
    X, y, _, _ = counts
    exact = InfluenceScorer(PoissonGLM(), curvature="exact").fit(X, y)
    cg = InfluenceScorer(PoissonGLM(), curvature="cg").fit(X, y)
    assert_allclose(cg.self_influence_, exact.self_influence_, rtol=1e-6, atol=1e-10)
    H = exact.adapter_.hessian_operator().matmat(np.eye(exact.adapter_.n_params))
    diag = InfluenceScorer(PoissonGLM(), curvature="diagonal", random_state=0)
    d = diag.fit(X, y).curvature_.diagonal_
    assert np.corrcoef(d, np.diag(H))[0, 1] > 0.9


def test_a_backend_needing_more_than_the_core_names_what_is_missing(counts):
    X, y, _, _ = counts
    with pytest.raises(TypeError) as err:
        InfluenceScorer(PoissonGLM(), curvature="kfac").fit(X, y)
    msg = str(err.value)
    assert "curvature='kfac' needs Kronecker layer statistics" in msg
    assert "PoissonAdapter does not" in msg and "kronecker_layers" in msg
    assert msg.endswith("use 'cg' or 'ggn'.")
    for name in ("ekfac", "blockggn", "lissa"):
        with pytest.raises(TypeError, match=f"curvature='{name}' needs"):
            InfluenceScorer(PoissonGLM(), curvature=name).fit(X, y)
    scorer = InfluenceScorer(PoissonGLM()).fit(X, y)
    with pytest.raises(TypeError, match="loo_change needs retraining"):
        loo_change(scorer, X[:2], y[:2], [0])
    with pytest.raises(TypeError, match="pbrf_change needs response-function"):
        pbrf_change(scorer, X[:2], y[:2], [0])
    with pytest.raises(TypeError, match="input_perturbation needs input gradients"):
        scorer.input_perturbation(X[:2], y[:2])
    with pytest.raises(TypeError, match="method='newton'.*use method='first_order'"):
        scorer.group_influence(X[:2], y[:2], np.arange(len(X)) % 5, method="newton")
    with pytest.raises(TypeError, match="row's own curvature block.*first_order"):
        scorer.influence(X[:2], y[:2], method="newton")
    with pytest.raises(TypeError, match="The leverage needs each row's own"):
        scorer.diagnostics()


def test_a_missing_capability_is_also_a_value_error(breast_cancer):
    # Callers that caught the ValueError these requests raised before (TracIn
    # on a model without checkpoints) keep working.
    Xtr, _, ytr, _ = breast_cancer
    assert issubclass(MissingCapabilityError, TypeError)
    with pytest.raises(ValueError, match="method='tracin' needs training checkpoints"):
        NoisyLabelDetector(method="tracin").fit(Xtr, ytr)


def test_an_incomplete_adapter_is_refused_at_make_adapter(counts):
    class Broken(PoissonGLM):
        pass

    class Partial:
        def __init__(self, *args, **kwargs):
            self.n_params = 5

        def params(self):
            return np.zeros(5)

    make_adapter.register(Broken, lambda est, X, y, **kw: Partial())
    X, y, _, _ = counts
    with pytest.raises(TypeError, match="The adapter made for Broken needs") as err:
        make_adapter(Broken().fit(X, y), X, y)
    assert "it lacks n_train, n_outputs" in str(err.value)
    assert "params," not in str(err.value)


def test_an_unknown_estimator_points_at_register():
    with pytest.raises(TypeError, match=r"make_adapter.register\(object\)"):
        make_adapter(object(), np.zeros((2, 1)), np.zeros(2))


# -- the built-in adapters' capabilities ----------------------------------------

ALL = [
    DenseCurvature,
    HessianDiagonal,
    GGNDiagonal,
    MinibatchCurvature,
    KroneckerStatistics,
    SubsetHessian,
    Reparametrizable,
    Retrainable,
    ResponseFunction,
    InputGradients,
    TrainingCheckpoints,
]


def test_linear_adapter_capabilities(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    a = make_adapter(LogisticRegression().fit(Xtr, ytr), Xtr, ytr)
    assert isinstance(a, ModelAdapter)
    has = {c.__name__ for c in ALL if isinstance(a, c)}
    assert has == {c.__name__ for c in ALL} - {"TrainingCheckpoints"}
    assert_allclose(a.train_indices, np.arange(len(ytr)))
    assert "LogisticRegression()" in repr(a)


def test_linear_ggn_diagonal_and_minibatch_ggn_are_the_hessians(diabetes):
    X, _, y, _ = diabetes
    a = make_adapter(Ridge(alpha=3.0).fit(X, y), X, y)
    H = a.hessian_operator().matmat(np.eye(a.n_params))
    assert_allclose(a.ggn_diagonal(), np.diag(H), rtol=1e-12)
    V = np.random.default_rng(0).standard_normal((a.n_params, 2))
    rows = np.arange(10)
    Xt = np.hstack([X[rows], np.ones((10, 1))])
    expected = Xt.T @ Xt @ V / 10 + a.penalty[:, None] * V
    assert_allclose(a.ggn_matvec(V, rows), expected, rtol=1e-10)


def test_cg_on_the_ggn_uses_the_exact_diagonal(breast_cancer):
    # The mean eigenvalue behind damping="auto" is trace(G) / p exactly now
    # (it was a 100-probe Hutchinson estimate).
    Xtr, _, ytr, _ = breast_cancer
    a = make_adapter(LogisticRegression().fit(Xtr, ytr), Xtr, ytr)
    cg = CGCurvature(operator="ggn").fit(a)
    G = a.ggn_matrix()
    assert_allclose(cg.mean_eigenvalue_, np.trace(G) / a.n_params, rtol=1e-12)


def test_curvature_and_influence_import_no_private_model_module():
    # The contract is the public names of skinfluence.models: no backend or
    # question reads a private module of models/.
    root = pathlib.Path(__file__).parents[2] / "skinfluence"
    offenders = []
    for pkg in ("curvature", "influence", "evaluation"):
        for path in (root / pkg).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if "models" in parts and parts[-1].startswith("_"):
                        offenders.append(f"{path.name}: {node.module}")
    assert not offenders, offenders


# -- torch ------------------------------------------------------------------------


def _torch_adapter(norm=False, **kwargs):
    torch = pytest.importorskip("torch")
    from skinfluence.models import TorchAdapter

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 3)), rng.integers(0, 3, 30)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 5),
        torch.nn.LayerNorm(5) if norm else torch.nn.Identity(),
        torch.nn.Tanh(),
        torch.nn.Linear(5, 3),
    )
    return TorchAdapter(
        net,
        torch.nn.CrossEntropyLoss(),
        X,
        y,
        kind="multiclass",
        classes=np.arange(3),
        penalty=0.01,
        **kwargs,
    )


def test_torch_adapter_capabilities():
    a = _torch_adapter()
    assert isinstance(a, ModelAdapter)
    has = {c.__name__ for c in ALL if isinstance(a, c)}
    assert has == {c.__name__ for c in ALL} - {"HessianDiagonal", "SubsetHessian"}
    assert a.n_outputs == 3
    assert "TorchAdapter(Sequential" in repr(a)
    assert a.kronecker_layers()[1].name == "3"


@pytest.mark.parametrize("norm", [False, True], ids=["linear-layers", "layernorm"])
def test_torch_ggn_diagonal_is_exact(norm):
    # nn.Linear layers only: from type-2 Kronecker statistics; a LayerNorm's
    # parameters: from per-sample Jacobians.  Both against the dense GGN
    # assembled from Gauss-Newton-vector products.
    a = _torch_adapter(norm=norm)
    assert_allclose(a.ggn_diagonal(), np.diag(a.ggn_matrix()), rtol=1e-10)


def test_torch_adapter_takes_train_indices_and_checkpoints_in_its_constructor():
    torch = pytest.importorskip("torch")
    a = _torch_adapter()
    theta = a.params()
    tree = {k: torch.as_tensor(v) for k, v in _by_name(a, theta + 1.0).items()}
    rows = np.arange(30) * 2
    b = _torch_adapter(train_indices=rows, checkpoints=[(tree, 0.5), (theta, 0.1)])
    assert_allclose(b.train_indices, rows)
    (t0, lr0), (t1, lr1) = b.checkpoints
    assert_allclose(t0, theta + 1.0)
    assert_allclose(t1, theta)
    assert (lr0, lr1) == (0.5, 0.1)
    assert b.with_data(np.zeros((4, 3)), np.zeros(4, dtype=int)).checkpoints == []
    with pytest.raises(ValueError, match="train_indices has 2 entries"):
        _torch_adapter(train_indices=[0, 1])
    with pytest.raises(ValueError, match="checkpoint has 3 parameters"):
        _torch_adapter(checkpoints=[(np.zeros(3), 0.1)])


def _by_name(adapter, theta):
    return {
        name: theta[sl].reshape(shape)
        for name, (sl, shape) in zip(
            [n for n, p in adapter._module.named_parameters()],
            adapter.param_blocks(),
            strict=True,
        )
    }


def test_require_returns_the_adapter_and_names_the_capability(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    a = make_adapter(LogisticRegression().fit(Xtr, ytr), Xtr, ytr)
    assert require(a, KroneckerStatistics, purpose="x") is a
    with pytest.raises(TypeError, match=r"LinearAdapter\(LogisticRegression\(\)\)"):
        require(a, TrainingCheckpoints, purpose="method='tracin'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        require(a, ModelAdapter, purpose="x")


def test_linear_kronecker_statistics_follow_each_family_loss():
    # The Monte-Carlo Fisher of a Poisson GLM samples with the output-space
    # curvature mu (not unit variance): it converges to the type-2 factors.
    from sklearn.linear_model import PoissonRegressor

    from skinfluence.curvature import KFACCurvature

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = rng.poisson(np.exp(X @ np.array([0.3, -0.2, 0.1]) + 0.5)).astype(float)
    model = PoissonRegressor(alpha=0.1, tol=1e-10, max_iter=1000).fit(X, y)
    a = make_adapter(model, X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unpenalised intercept
        exact = KFACCurvature(fisher="type2").fit(a).curvature_matrix()
        mc = KFACCurvature(fisher="mc", n_samples=2000, random_state=0).fit(a)
    assert_allclose(mc.curvature_matrix(), exact, atol=0.01 * np.abs(exact).max())
