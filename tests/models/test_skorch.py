"""skorch nets: the adapter differentiates exactly what skorch minimised."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

torch = pytest.importorskip("torch")
skorch = pytest.importorskip("skorch")

from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier  # noqa: E402

from skinfluence import InfluenceScorer  # noqa: E402
from skinfluence.evaluation import loo_change, pbrf_change  # noqa: E402


class Linear1(torch.nn.Module):
    def __init__(self, d=30):
        super().__init__()
        self.lin = torch.nn.Linear(d, 1)

    def forward(self, x):
        return self.lin(x)


class SoftmaxMLP(torch.nn.Module):
    def __init__(self, d=13, k=3, hidden=8):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, k)
        )

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)  # NLLLoss on probabilities


def _skorch_losses(net, X, y):
    """Per-row loss exactly as skorch trains: get_loss(infer(x), y)."""
    with torch.no_grad():
        return [
            float(
                net.get_loss(
                    net.infer(torch.as_tensor(X[i : i + 1])),
                    torch.as_tensor(y[i : i + 1]),
                )
            )
            for i in range(len(X))
        ]


@pytest.fixture(scope="module")
def skorch_logreg(breast_cancer):
    # Logistic regression as nn.Linear + BCEWithLogits + weight decay on the
    # weight only (sklearn leaves the intercept unpenalised), trained by skorch
    # full-batch SGD with momentum to convergence.
    X, Xte, y, yte = breast_cancer
    lam = 0.05
    torch.manual_seed(0)
    net = NeuralNetBinaryClassifier(
        Linear1,
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        optimizer__weight_decay=lam,
        optimizer__param_groups=[("lin.bias", {"weight_decay": 0.0})],
        lr=0.5,
        max_epochs=400,
        batch_size=-1,
        train_split=None,
        verbose=0,
    ).fit(X.astype(np.float32), y.astype(np.float32))
    return net, lam, X, Xte, y, yte


def test_skorch_logistic_regression_equals_closed_form(skorch_logreg):
    net, lam, X, Xte, y, yte = skorch_logreg
    scorer = InfluenceScorer(FrozenEstimator(net)).fit(X.astype(np.float32), y)
    lr = LogisticRegression(C=1 / (lam * len(y)), tol=1e-12, max_iter=10_000)
    reference = InfluenceScorer(lr).fit(X, y)
    assert scorer.grad_norm_ < 1e-4
    S, R = scorer.influence(Xte, yte), reference.influence(Xte, yte)
    r = [np.corrcoef(s, t)[0, 1] for s, t in zip(S, R, strict=True)]
    assert min(r) >= 0.999
    assert_allclose(
        scorer.self_influence_, reference.self_influence_, rtol=0.02, atol=1e-4
    )


def test_weight_decay_read_from_param_groups(skorch_logreg):
    net, lam, X, *_ = skorch_logreg
    scorer = InfluenceScorer(FrozenEstimator(net)).fit(X.astype(np.float32), _[1])
    pen = scorer.adapter_.penalty
    assert_allclose(pen[:-1], lam)
    assert pen[-1] == 0.0


def test_nll_on_probabilities_matches_get_loss(wine):
    X, _, y, _ = wine
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        SoftmaxMLP, max_epochs=20, lr=0.1, train_split=None, verbose=0
    ).fit(X, y)
    scorer = InfluenceScorer(FrozenEstimator(net)).fit(X, y)
    expected = _skorch_losses(net, X[:10], y[:10])
    assert_allclose(scorer.adapter_.loss(X[:10], y[:10]), expected, rtol=1e-5)


def test_train_split_rows_are_honoured(wine):
    X, _, y, _ = wine
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetClassifier(SoftmaxMLP, max_epochs=5, lr=0.1, verbose=0).fit(X, y)
    scorer = InfluenceScorer(FrozenEstimator(net)).fit(X, y)
    ds_train, _ = net.get_split_datasets(X, y)
    assert_allclose(scorer.train_indices_, ds_train.indices)
    assert scorer.n_train_ == len(ds_train.indices) < len(X)
    # every result is indexed by the rows of X; held-out rows have exact
    # removal influence 0 (the model never saw them)
    rows = np.asarray(ds_train.indices)
    held_out = np.setdiff1d(np.arange(len(X)), rows)
    S = scorer.influence(X[:3], y[:3])
    assert S.shape == (3, len(X)) == (3, scorer.n_samples_fit_)
    assert_allclose(S[:, held_out], 0.0)
    # the trained columns are the adapter's own scores, in the rows' places
    direct = scorer.adapter_.loss_grads(X[:3], y[:3])
    q = scorer.curvature_.solve(direct.T).T
    G = scorer.adapter_.train_grads(slice(None))
    assert_allclose(S[:, rows], q @ G.T, rtol=1e-8, atol=1e-9)
    assert scorer.self_influence_.shape == (len(X),)
    assert_allclose(scorer.self_influence_[held_out], 0.0)
    assert (scorer.self_influence_[rows] > 0).all()
    change = scorer.parameter_change([rows[0], held_out[0]])
    assert np.abs(change[0]).max() > 0 and not change[1].any()
    assert scorer.label_change(X[:2], y[:2]).shape[1] == len(X)
    assert scorer.transform(X[:2]).shape == (2, len(X))
    assert len(scorer.get_feature_names_out()) == len(X)
    groups = np.arange(len(X)) % 7
    R = scorer.group_influence(X[:2], y[:2], groups)
    assert_allclose(R, S[:2] @ np.eye(7)[groups])
    # the ground truth indexes the same rows: a held-out row changes nothing
    actual = loo_change(scorer, X[:2], y[:2], [held_out[0], rows[0]])
    assert_allclose(actual[:, 0], 0.0)
    assert np.abs(actual[:, 1]).max() > 0
    with warnings.catch_warnings():  # the trained row's solve is not the point
        warnings.simplefilter("ignore")
        delta, info = pbrf_change(
            scorer, X[:2], y[:2], [held_out[0], rows[0]], return_info=True
        )
    assert_allclose(delta[:, 0], 0.0)  # one report per requested row
    assert info["converged"].shape == (2,) and info["converged"][0]
    assert info["n_iter"][0] == 0 and info["n_iter"][1] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # leverage-1 rows
        table = scorer.diagnostics()
    assert len(table) == len(X)
    assert_allclose(table["self_influence"].to_numpy()[held_out], 0.0)
    assert table["leverage"].iloc[held_out].isna().all()
    # never negative (NaN where damping 0 leaves a row's removal undetermined)
    assert not (table["cooks_distance"].iloc[rows] < 0).any()


def test_net_is_not_mutated(wine):
    X, _, y, _ = wine
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        SoftmaxMLP, max_epochs=5, lr=0.1, train_split=None, verbose=0
    )
    net.fit(X, y)
    before = {k: v.clone() for k, v in net.module_.state_dict().items()}
    scorer = InfluenceScorer(FrozenEstimator(net), curvature="ggn", damping=1e-3).fit(
        X, y
    )
    loo_change(scorer, X[:2], y[:2], [0, 1])
    for k, v in net.module_.state_dict().items():
        assert torch.equal(before[k], v)
    assert next(net.module_.parameters()).dtype == torch.float32


def test_fit_clones_unfitted_net(wine):
    X, _, y, _ = wine
    net = NeuralNetClassifier(
        SoftmaxMLP, max_epochs=3, lr=0.1, train_split=None, verbose=0
    )
    scorer = InfluenceScorer(net, curvature="ggn", damping="auto").fit(
        X.astype(np.float32), y
    )
    assert not hasattr(net, "module_")
    assert scorer.predict(X[:4].astype(np.float32)).shape == (4,)


def test_ggn_of_nll_on_probabilities_is_the_empirical_fisher(wine):
    # H_out of -log(p_y + eps) w.r.t. the probabilities is e_y e_y^T / (p_y+eps)^2,
    # so J^T H_out J = g g^T per sample: the Gauss-Newton matrix split at a
    # probability output is exactly the empirical Fisher (plus weight decay).
    X, _, y, _ = wine
    X = X.astype(np.float32)[:50]
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        SoftmaxMLP,
        max_epochs=5,
        lr=0.1,
        optimizer__weight_decay=1e-3,
        train_split=None,
        verbose=0,
    ).fit(X, y[:50])
    a = (
        InfluenceScorer(FrozenEstimator(net), curvature="identity")
        .fit(X, y[:50])
        .adapter_
    )
    G = a.train_grads()
    expected = G.T @ G / a.n_train + np.diag(a.penalty)
    assert_allclose(a.ggn_matrix(), expected, rtol=1e-6, atol=1e-9)


def test_regressor_loss_matches_get_loss(diabetes):
    from skorch import NeuralNetRegressor

    X, _, y, _ = diabetes
    X, y = X[:80].astype(np.float32), (y[:80] / 100).astype(np.float32)[:, None]
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(10, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)
    )
    net = NeuralNetRegressor(
        module, max_epochs=30, lr=0.05, train_split=None, verbose=0
    ).fit(X, y)
    scorer = InfluenceScorer(FrozenEstimator(net), curvature="ggn", damping=1e-3)
    scorer.fit(X, y)
    expected = _skorch_losses(net, X[:8], y[:8])
    assert_allclose(scorer.adapter_.loss(X[:8], y[:8]), expected, rtol=1e-5)
    assert_allclose(
        scorer.adapter_.prediction(X[:8]), net.predict(X[:8])[:, 0], rtol=1e-5
    )
    assert scorer.influence(X[:3], y[:3]).shape == (3, 80)


def test_label_change_on_skorch_equals_closed_form(skorch_logreg):
    net, lam, X, Xte, y, yte = skorch_logreg
    scorer = InfluenceScorer(FrozenEstimator(net)).fit(X.astype(np.float32), y)
    lr = LogisticRegression(C=1 / (lam * len(y)), tol=1e-12, max_iter=10_000)
    reference = InfluenceScorer(lr).fit(X, y)
    got = scorer.label_change(Xte[:3], yte[:3])
    want = reference.label_change(Xte[:3], yte[:3])
    assert got.shape == want.shape == (3, len(y), 2)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999


def test_input_perturbation_keeps_the_input_shape():
    X = np.random.default_rng(0).standard_normal((40, 2, 3)).astype(np.float32)
    y = (X[:, 0, 0] > 0).astype(np.int64)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 2))
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=5,
        lr=0.1,
        train_split=None,
        verbose=0,
    ).fit(X, y)
    scorer = InfluenceScorer(FrozenEstimator(net), curvature="ggn", damping=0.1)
    R = scorer.fit(X, y).input_perturbation(X[:2], y[:2])
    assert R.shape == (2, 40, 2, 3)


def test_class_weighted_criterion_is_rejected(wine):
    X, _, y, _ = wine
    net = NeuralNetClassifier(
        SoftmaxMLP,
        criterion=torch.nn.NLLLoss,
        criterion__weight=torch.tensor([1.0, 2.0, 1.0]),
        max_epochs=2,
        train_split=None,
        verbose=0,
    ).fit(X.astype(np.float32), y)
    with pytest.raises(ValueError, match="Class-weighted criteria"):
        InfluenceScorer(FrozenEstimator(net)).fit(X.astype(np.float32), y)


def test_fitted_net_with_tracin_checkpoints_clones():
    """skorch reads a callback's parameters from its attributes (all but those
    ending in ``_``): the callback's per-epoch state must not look like one,
    or a fitted net cannot be cloned, e.g. by NoisyLabelDetector."""
    from sklearn.base import clone

    from skinfluence import NoisyLabelDetector, TracInCheckpoints

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        torch.nn.Linear(4, 2),
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=2,
        train_split=None,
        verbose=0,
        callbacks=[("tracin", TracInCheckpoints())],
    ).fit(X, y)
    assert dict(clone(net).callbacks)["tracin"].every == 1  # raised before
    detector = NoisyLabelDetector(net, method="tracin").fit(X, y)
    tracin = dict(detector.scorer_.estimator_.callbacks_)["tracin"]
    assert len(tracin.checkpoints_) == 2
    # a labelled batch is rated by the same checkpoints (outlier orientation)
    np.testing.assert_allclose(
        detector.score_samples(X, y), -detector.scores_, rtol=1e-5, atol=1e-8
    )
