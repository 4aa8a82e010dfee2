"""scikit-learn's MLPs through the torch path, against scikit-learn itself:
its reported objective ``loss_``, its predictions, its own backpropagated
gradient, and PBRF responses for the influence it predicts."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.frozen import FrozenEstimator
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

torch = pytest.importorskip("torch")

from skinfluence import (  # noqa: E402
    CleanedClassifier,
    InfluenceScorer,
    NoisyLabelDetector,
    Relabeler,
)
from skinfluence.evaluation import loo_correlation, pbrf_change  # noqa: E402
from skinfluence.models import make_adapter  # noqa: E402
from skinfluence.models._mlp import mlp_module  # noqa: E402

ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
CASES = ["multiclass", "binary", "squared_error", "poisson"]


def _data(case, wine, diabetes):
    if case in ("multiclass", "binary"):
        X, _, y, _ = wine
        X, y = X[:, :5], y
        if case == "binary":
            X, y = X[y < 2], np.where(y[y < 2] == 0, "a", "b")  # any label type
        return X, y
    X, _, y, _ = diabetes
    X = X[:100, :5]
    if case == "poisson":
        return X, np.random.default_rng(0).poisson(np.exp(0.3 * X[:, 0] + 0.5))
    return X, (y[:100] - y.mean()) / y.std()


def _model(case, activation="tanh", **kw):
    kw = {
        "hidden_layer_sizes": (4,),
        "activation": activation,
        "alpha": 0.1,
        "solver": "lbfgs",
        "tol": 1e-12,
        "max_iter": 300,
        "random_state": 0,
        **kw,
    }
    if case in ("multiclass", "binary"):
        return MLPClassifier(**kw)
    return MLPRegressor(loss=case, **kw)


def _fit(est, X, y, w=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs at max_iter
        return est.fit(X, y, sample_weight=w)


def _objective(a):
    """``J = (1/n) sum_i w_i loss_i + (1/2) theta^T diag(penalty) theta``."""
    X, theta = a._np(a._X), a.params()
    y = a._np(a._y)
    if a.is_classifier:
        y = a.classes[y.astype(int)]
    return (a.weights @ a.loss(X, y)) / a.n_train + 0.5 * a.penalty @ theta**2


def _sklearn_gradient(est, X, y, w):
    """scikit-learn's own backpropagated gradient of its objective, flattened in
    the adapter's order (layer by layer: weight = coefs_.T, then bias)."""
    Y = est._label_binarizer.transform(y) if hasattr(est, "_label_binarizer") else y
    Y = np.asarray(Y, dtype=float).reshape(len(X), -1)
    acts = [X] + [None] * len(est.coefs_)
    cg = [np.empty_like(c) for c in est.coefs_]
    ig = [np.empty_like(b) for b in est.intercepts_]
    _, cg, ig = est._backprop(X, Y, w, acts, [None] * len(cg), cg, ig)
    pairs = zip(cg, ig, strict=True)
    return np.concatenate([v for c, b in pairs for v in (c.T.ravel(), b)])


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_objective_is_sklearns(activation, case, weighted, wine, diabetes):
    # sklearn's loss_ is J_sk = (sum_i w_i loss_i + alpha/2 ||coefs||^2) / sum w;
    # the adapter's J is the same objective times sum(w) / n.
    X, y = _data(case, wine, diabetes)
    w = np.random.default_rng(1).uniform(0.3, 3.0, len(y)) if weighted else None
    est = _fit(_model(case, activation), X, y, w)
    a = make_adapter(est, X, y, sample_weight=w)
    S = len(y) if w is None else w.sum()
    assert_allclose(_objective(a) * len(y) / S, est.loss_, rtol=1e-10, atol=1e-12)
    # and its gradient is sklearn's own backpropagation
    g = a.objective_grad() * len(y) / S
    assert_allclose(g, _sklearn_gradient(est, X, y, w), atol=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_predictions_are_sklearns(activation, case, wine, diabetes):
    X, y = _data(case, wine, diabetes)
    est = _fit(_model(case, activation), X, y)
    with torch.no_grad():
        z = mlp_module(est)(torch.as_tensor(X)).numpy()
    if case == "multiclass":
        assert_allclose(torch.softmax(torch.as_tensor(z), 1), est.predict_proba(X))
    elif case == "binary":
        assert_allclose(1 / (1 + np.exp(-z[:, 0])), est.predict_proba(X)[:, 1])
    else:
        out = np.exp(z) if case == "poisson" else z
        assert_allclose(out[:, 0], est.predict(X), rtol=1e-12)
    a = make_adapter(est, X, y)
    if a.is_classifier:  # log p(predicted class)
        assert_allclose(np.exp(a.prediction(X)), est.predict_proba(X).max(axis=1))


def test_several_targets_use_the_summed_squared_error(diabetes):
    # sklearn's loss_ averages over targets, but its gradient -- and so its
    # optimum -- is that of the sum: the adapter's gradient is sklearn's.
    X, _, y, _ = diabetes
    X, Y = X[:80, :4], np.column_stack([y[:80], y[:80] ** 0.5]) / 100
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(Y))
    est = _fit(_model("squared_error"), X, Y, w)
    a = make_adapter(est, X, Y, sample_weight=w)
    g = a.objective_grad() * len(Y) / w.sum()
    assert_allclose(g, _sklearn_gradient(est, X, Y, w), atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_lbfgs_at_a_tight_tol_is_stationary(case, wine, diabetes):
    X, y = _data(case, wine, diabetes)
    est = _fit(_model(case, max_iter=3000), X, y)
    a = make_adapter(est, X, y)
    scale = np.sqrt(np.mean(np.sum(a.train_grads() ** 2, axis=1)))
    assert np.linalg.norm(a.objective_grad()) < 1e-3 * scale


@pytest.mark.parametrize("case", ["multiclass", "squared_error"])
def test_influence_tracks_pbrf(case, wine, diabetes):
    X, y = _data(case, wine, diabetes)
    Xtr, ytr, Xq, yq = X[:-3], y[:-3], X[-3:], y[-3:]
    est = _model(case, hidden_layer_sizes=(5,), alpha=1.0, max_iter=2000)
    scorer = InfluenceScorer(est, curvature="ggn", damping=0.1).fit(Xtr, ytr)
    S = scorer.influence(Xq, yq)
    idx = np.random.default_rng(0).choice(len(ytr), 20, replace=False)
    pbrf = pbrf_change(scorer, Xq, yq, idx)
    # measured: Pearson 0.996 (classifier) and 0.996 (regressor)
    assert loo_correlation(S[:, idx] / scorer.n_train_, pbrf) >= 0.95


def test_scorer_detector_and_pipeline(wine):
    X, Xte, y, yte = wine
    Xraw = X * 3.0 + 1.0  # a Pipeline's scaler undoes this
    est = _model("multiclass", alpha=1.0)
    w = np.random.default_rng(4).uniform(0.5, 2.0, len(y))
    plain = InfluenceScorer(est).fit(X[:, :5], y)
    weighted = InfluenceScorer(est).fit(X[:, :5], y, sample_weight=w)
    assert_allclose(weighted.adapter_.weights, w)
    S_p, S_w = plain.influence(Xte[:, :5], yte), weighted.influence(Xte[:, :5], yte)
    assert S_w.shape == S_p.shape == (len(yte), len(y))
    assert not np.allclose(S_w, S_p)
    # Pipeline: the scaler is fixed preprocessing; same network, same scores
    pipe = make_pipeline(StandardScaler(), est)
    S_pipe = InfluenceScorer(pipe).fit(Xraw[:, :5], y)
    scaler = S_pipe.estimator_[0]
    direct = InfluenceScorer(FrozenEstimator(S_pipe.estimator_[-1])).fit(
        scaler.transform(Xraw[:, :5]), y
    )
    assert_allclose(
        S_pipe.influence(Xte[:, :5] * 3.0 + 1.0, yte),
        direct.influence(scaler.transform(Xte[:, :5] * 3.0 + 1.0), yte),
    )
    S_pw = InfluenceScorer(pipe).fit(Xraw[:, :5], y, sample_weight=w)
    assert_allclose(S_pw.adapter_.weights, w)
    det = NoisyLabelDetector(est, contamination=0.1).fit(X[:, :5], y)
    assert det.noisy_mask_.sum() == round(0.1 * len(y))
    rel = Relabeler(est, method="label_influence", max_fraction=0.05).fit(X[:, :5], y)
    assert rel.relabeled_mask_.sum() <= round(0.05 * len(y))
    cleaned = CleanedClassifier(pipe, NoisyLabelDetector(pipe)).fit(Xraw[:, :5], y)
    assert cleaned.score(Xraw[:, :5], y) > 0.8


def test_retrain_refits_with_the_kept_weights(wine):
    X, _, y, _ = wine
    X, y = X[:80, :4], y[:80]
    w = np.random.default_rng(5).uniform(0.5, 2.0, len(y))
    est = _fit(_model("multiclass", alpha=1.0, max_iter=3000), X, y, w)
    a = make_adapter(est, X, y, sample_weight=w)
    keep = np.ones(len(y), bool)
    # warm start on every row stays at the optimum (sklearn's lbfgs stops on
    # its relative function change, so only to ~1e-5)
    assert_allclose(a.retrain(keep).params(), a.params(), atol=1e-4)
    keep[[3, 7]] = False
    for warm in (True, False):
        new = a.retrain(keep, warm_start=warm, random_state=0)
        assert_allclose(new.weights, w[keep])
        # an optimum of the weighted objective on the kept rows...
        scale = np.linalg.norm(new.train_grads(), axis=1).mean()
        assert np.linalg.norm(new.objective_grad()) < 1e-4 * scale
    # ... which the unweighted refit is not
    ref = _fit(_model("multiclass", alpha=1.0, max_iter=3000), X[keep], y[keep])
    as_weighted = make_adapter(ref, X[keep], y[keep], sample_weight=w[keep])
    assert np.linalg.norm(as_weighted.objective_grad()) > 1e-2 * scale


def test_unsupported_configurations_are_refused(wine):
    X, _, y, _ = wine
    X = X[:, :4]
    est = _fit(_model("multiclass", solver="adam", early_stopping=True, max_iter=5),
               X, y)  # fmt: skip
    with pytest.raises(ValueError, match="early_stopping=True"):
        make_adapter(est, X, y)
    Y = np.column_stack([y == 0, y == 1]).astype(int)
    est = _fit(_model("multiclass", max_iter=5), X, Y)
    with pytest.raises(ValueError, match="multilabel"):
        make_adapter(est, X, Y)
    with pytest.raises(Exception, match="not fitted"):
        make_adapter(MLPClassifier(), X, y)


def test_linear_path_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "from sklearn.linear_model import Ridge\n"
        "from skinfluence import InfluenceScorer\n"
        "X = np.random.default_rng(0).standard_normal((20, 3))\n"
        "InfluenceScorer(Ridge()).fit(X, X[:, 0])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        # a user's subclass, first MLP seen: the lazy loader still finds it
        "from sklearn.neural_network import MLPClassifier\n"
        "class Mine(MLPClassifier):\n"
        "    pass\n"
        "y = (X[:, 0] > 0).astype(int)\n"
        "est = Mine((2,), max_iter=50, random_state=0).fit(X, y)\n"
        "from skinfluence.models import make_adapter\n"
        "assert make_adapter(est, X, y).n_params == 3 * 2 + 2 + 2 + 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("curvature", ["cg", "ggn", "blockggn", "kfac", "ekfac"])
def test_every_network_backend_applies(curvature, wine):
    # Gauss-Newton, block and Kronecker backends approximate the exact solve:
    # correlated with it, not equal (measured Pearson: cg 1.0, ggn 0.89,
    # blockggn 0.83, ekfac 0.74, kfac 0.69).
    X, _, y, _ = wine
    X = X[:, :5]
    est = _model("multiclass", alpha=1.0)
    ref = InfluenceScorer(est, curvature="exact", damping=0.01).fit(X, y)
    got = InfluenceScorer(est, curvature=curvature, damping=0.01, random_state=0)
    S_ref, S = ref.influence(X[:3], y[:3]), got.fit(X, y).influence(X[:3], y[:3])
    r = np.corrcoef(S.ravel(), S_ref.ravel())[0, 1]
    assert r > 0.5
