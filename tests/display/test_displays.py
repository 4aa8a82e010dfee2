"""The explanation, fidelity, label-issue and curvature displays: drawn with
Agg without warnings, labelled, and the numbers drawn are the numbers
computed (checked against the estimators and scipy, not the display)."""

import warnings

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402

from skinfluence import InfluenceScorer, NoisyLabelDetector, Relabeler  # noqa: E402
from skinfluence.datasets import inject_label_noise  # noqa: E402
from skinfluence.display import (  # noqa: E402
    CurvatureComparisonDisplay,
    ExplanationDisplay,
    FidelityDisplay,
    LabelIssuesDisplay,
)
from skinfluence.evaluation import loo_change, pbrf_change  # noqa: E402


@pytest.fixture(autouse=True)
def no_warnings_and_close():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(n_class=4, return_X_y=True)
    X = X / 16.0
    lr = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000)
    scorer = InfluenceScorer(lr).fit(X[:300], y[:300])
    return scorer, X[:300], y[:300], X[300:], y[300:]


@pytest.fixture(scope="module")
def ridge():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X.index = X.index * 3 + 1000
    scorer = InfluenceScorer(Ridge(alpha=1.0)).fit(X[:120], y[:120])
    return scorer, X[:120], y[:120], X[120:], y[120:]


def _title_numbers(x, y):
    r = np.corrcoef(x, y)[0, 1]
    rho = stats.spearmanr(x, y).statistic
    return f"{r:.3f}", f"{rho:.3f}"


# --------------------------------------------------------------- explanation


def test_explanation_bars_are_the_explained_scores(ridge):
    scorer, X, y, Xq, yq = ridge
    disp = ExplanationDisplay.from_estimator(
        scorer, Xq.iloc[[0]], yq.iloc[[0]], X_train=X, k=4
    )
    why = scorer.explain(Xq.iloc[[0]], yq.iloc[[0]], k=4)
    widths = [b.get_width() for b in disp.bars_helpful_]
    assert_allclose(widths, why.helpful_scores[0])
    assert_allclose([b.get_width() for b in disp.bars_harmful_], why.harmful_scores[0])
    # labelled by the DataFrame's index, not the positions
    ticks = [t.get_text() for t in disp.ax_.get_yticklabels()]
    rows = np.r_[why.helpful_indices[0], why.harmful_indices[0]]
    assert ticks == [f"row {X.index[i]}" for i in rows]
    assert "label" in disp.ax_.get_xlabel()
    assert disp.ax_.get_ylabel() == "Training row"
    assert disp.ax_.get_title().startswith("Query")
    assert disp.figure_ is disp.ax_.figure
    # plot again on given axes, target="prediction"
    fig, ax = plt.subplots()
    again = ExplanationDisplay.from_estimator(
        scorer, Xq.iloc[[0]], target="prediction", ax=ax
    )
    assert again.ax_ is ax and "prediction" in ax.get_xlabel()


def test_explanation_thumbnails_show_the_rows(digits):
    scorer, X, y, Xq, yq = digits
    disp = ExplanationDisplay.from_estimator(
        scorer, Xq[[3]], yq[[3]], X_train=X, y_train=y, k=3, image_shape=(8, 8)
    )
    why = scorer.explain(Xq[[3]], yq[[3]], k=3)
    assert len(disp.helpful_axes_) == len(disp.harmful_axes_) == 3
    for axes, idx, val in (
        (disp.helpful_axes_, why.helpful_indices[0], why.helpful_scores[0]),
        (disp.harmful_axes_, why.harmful_indices[0], why.harmful_scores[0]),
    ):
        for a, i, v in zip(axes, idx, val, strict=True):
            assert_array_equal(a.images[0].get_array(), X[i].reshape(8, 8))
            assert a.get_title() == f"row {i} (y={y[i]})\n{v:+.3g}"
    assert_array_equal(disp.query_ax_.images[0].get_array(), Xq[3].reshape(8, 8))
    assert f"label {yq[3]}" in disp.query_ax_.get_title()
    assert disp.helpful_axes_[0].get_ylabel() == "helpful"
    assert not disp.ax_.axison
    # sparse rows draw the same thumbnails
    from scipy import sparse

    sparse_scorer = InfluenceScorer(scorer.estimator).fit(sparse.csr_matrix(X), y)
    disp = ExplanationDisplay.from_estimator(
        sparse_scorer,
        sparse.csr_matrix(Xq[[3]]),
        yq[[3]],
        X_train=sparse.csr_matrix(X),
        k=3,
        image_shape=(8, 8),
    )
    i = sparse_scorer.explain(sparse.csr_matrix(Xq[[3]]), yq[[3]], k=3).helpful_indices
    assert_array_equal(
        disp.helpful_axes_[0].images[0].get_array(), X[i[0, 0]].reshape(8, 8)
    )


def test_explanation_refusals(digits):
    scorer, X, y, Xq, yq = digits
    with pytest.raises(ValueError, match="one query row"):
        ExplanationDisplay.from_estimator(scorer, Xq[:2], yq[:2])
    with pytest.raises(ValueError, match="image_shape needs X_train"):
        ExplanationDisplay.from_estimator(scorer, Xq[[0]], yq[[0]], image_shape=(8, 8))
    with pytest.raises(ValueError, match="height \\* width"):
        ExplanationDisplay.from_estimator(
            scorer, Xq[[0]], yq[[0]], X_train=X, image_shape=(4, 4)
        )
    with pytest.raises(ValueError, match="X_train must be the data"):
        ExplanationDisplay.from_estimator(scorer, Xq[[0]], yq[[0]], X_train=X[:5])
    with pytest.raises(NotFittedError):
        ExplanationDisplay.from_estimator(InfluenceScorer(), Xq[[0]], yq[[0]])


# ------------------------------------------------------------------ fidelity


def test_fidelity_plots_influence_against_refits(ridge):
    scorer, X, y, Xq, yq = ridge
    disp = FidelityDisplay.from_estimator(scorer, Xq.iloc[:2], yq.iloc[:2], n_rows=6)
    S = scorer.influence(Xq.iloc[:2], yq.iloc[:2])
    rows = np.argsort(-np.abs(S).max(axis=0), kind="stable")[:6]
    actual = loo_change(scorer, Xq.iloc[:2], yq.iloc[:2], rows)
    offsets = disp.scatter_.get_offsets()
    assert_allclose(offsets[:, 0], (S[:, rows] / scorer.n_train_).ravel())
    assert_allclose(offsets[:, 1], actual.ravel())
    r, rho = _title_numbers(offsets[:, 0], offsets[:, 1])
    title = disp.ax_.get_title()
    assert f"Pearson r = {r}" in title and f"= {rho}" in title
    assert float(r) > 0.99  # ridge: influence matches the refit
    assert "leave-one-out" in disp.ax_.get_ylabel()
    assert "Predicted" in disp.ax_.get_xlabel()
    assert_allclose(*disp.line_.get_data())  # the y = x line


def test_fidelity_pbrf_and_from_predictions(digits, ridge):
    _, X, y, Xq, yq = digits
    lr = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000)
    scorer = InfluenceScorer(lr, damping=1e-2).fit(X, y)
    # pbrf_change's own convergence report (L-BFGS stops at a relative gradient
    # of ~1e-6 on these rows): a warning of the ground truth, not of the display
    warnings.filterwarnings("ignore", "The pbrf_change solve did not converge")
    disp = FidelityDisplay.from_estimator(
        scorer,
        Xq[:1],
        yq[:1],
        n_rows=3,
        ground_truth="pbrf",
        ground_truth_params={"epsilon": 0.02},
    )
    assert "PBRF" in disp.ax_.get_ylabel()
    S = scorer.influence(Xq[:1], yq[:1])
    rows = np.argsort(-np.abs(S[0]), kind="stable")[:3]
    expected = pbrf_change(scorer, Xq[:1], yq[:1], rows, epsilon=0.02)
    assert_allclose(disp.scatter_.get_offsets()[:, 1], expected.ravel())
    warnings.simplefilter("error")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    disp = FidelityDisplay.from_predictions(a, b)
    assert_allclose(disp.scatter_.get_offsets(), np.c_[a.ravel(), b.ravel()])
    r, rho = _title_numbers(a.ravel(), b.ravel())
    assert disp.ax_.get_title() == f"Pearson r = {r}, Spearman $\\rho$ = {rho}"
    # a constant side has no correlation: "n/a", and no warning
    disp = FidelityDisplay.from_predictions(np.zeros(4), np.arange(4.0))
    assert "n/a" in disp.ax_.get_title()
    with pytest.raises(ValueError, match="same, non-empty shape"):
        FidelityDisplay.from_predictions(a, b[:1])
    scorer, X, y, Xq, yq = ridge
    with pytest.raises(ValueError, match="ground_truth must be"):
        FidelityDisplay.from_estimator(
            scorer, Xq.iloc[:1], yq.iloc[:1], ground_truth="x"
        )
    with pytest.raises(ValueError, match="n_rows must be"):
        FidelityDisplay.from_estimator(scorer, Xq.iloc[:1], yq.iloc[:1], n_rows=0)


# -------------------------------------------------------------- label issues


@pytest.fixture(scope="module")
def noisy_digits():
    X, y = load_digits(n_class=3, return_X_y=True)
    X = X / 16.0
    y_noisy, flipped = inject_label_noise(y[:300], 0.1, random_state=0)
    return X[:300], y_noisy, X[300:], y[300:]


def test_label_issues_of_a_detector(noisy_digits):
    X, y, _, _ = noisy_digits
    Xdf = pd.DataFrame(X, index=np.arange(len(X)) + 7000)
    det = NoisyLabelDetector(LogisticRegression(max_iter=2000), contamination=0.1)
    det.fit(X, y)
    disp = LabelIssuesDisplay.from_estimator(det, Xdf, y, max_rows=6)
    flagged = np.flatnonzero(det.noisy_mask_)
    top = flagged[np.argsort(-det.scores_[flagged], kind="stable")][:6]
    assert_allclose([b.get_width() for b in disp.bars_], det.scores_[top])
    ticks = [t.get_text() for t in disp.ax_.get_yticklabels()]
    assert ticks == [f"row {7000 + i}: given {y[i]}" for i in top]
    assert disp.ax_.get_xlabel() == "Suspicion score"
    assert disp.ax_.get_title().startswith(f"6 of {len(flagged)} flagged")
    disp = LabelIssuesDisplay.from_estimator(det, X, y, max_rows=7, image_shape=(8, 8))
    assert len(disp.image_axes_) == 7
    for a, i in zip(disp.image_axes_, top, strict=False):
        assert_array_equal(a.images[0].get_array(), X[i].reshape(8, 8))
    with pytest.raises(ValueError, match="must be the data"):
        LabelIssuesDisplay.from_estimator(det, X[:10], y[:10])
    with pytest.raises(TypeError, match="NoisyLabelDetector or Relabeler"):
        LabelIssuesDisplay.from_estimator(InfluenceScorer(), X, y)
    with pytest.raises(NotFittedError):
        LabelIssuesDisplay.from_estimator(NoisyLabelDetector(), X, y)


def test_label_issues_of_a_relabeler(noisy_digits):
    X, y, Xv, yv = noisy_digits
    rel = Relabeler(LogisticRegression(max_iter=2000), method="label_influence")
    rel.fit(X, y, X_val=Xv, y_val=yv)
    rows = np.flatnonzero(rel.relabeled_mask_)
    assert len(rows) > 0
    order = rows[np.argsort(-rel.relabel_gain_[rows], kind="stable")][:5]
    disp = LabelIssuesDisplay.from_estimator(rel, X, y, max_rows=5, image_shape=(8, 8))
    for a, i in zip(disp.image_axes_, order, strict=True):
        assert a.get_title().startswith(
            f"row {i}\ngiven {y[i]} -> {rel.y_relabeled_[i]}"
        )
    assert "relabelled" in disp.ax_.get_title()
    disp = LabelIssuesDisplay.from_estimator(rel, X, y, max_rows=5)
    assert_allclose([b.get_width() for b in disp.bars_], rel.relabel_gain_[order])
    assert disp.ax_.get_xlabel() == "Relabelling gain"


def test_label_issues_when_nothing_is_flagged():
    disp = LabelIssuesDisplay([], [], []).plot()
    assert disp.bars_ is None and disp.image_axes_ == []
    assert "No rows flagged" in disp.ax_.texts[0].get_text()


# -------------------------------------------------------- curvature backends


def test_curvature_comparison_plots_each_backend_against_the_reference(ridge):
    scorer, X, y, Xq, yq = ridge
    scorer = InfluenceScorer(Ridge(alpha=1.0), damping=1e-3).fit(X, y)
    disp = CurvatureComparisonDisplay.from_estimator(
        scorer, X, y, curvatures=["cg", "identity"], X_query=Xq[:5], y_query=yq[:5]
    )
    ref = InfluenceScorer(Ridge(alpha=1.0), damping=1e-3, curvature="exact").fit(X, y)
    S_ref = ref.influence(Xq[:5], yq[:5])
    for j, name in enumerate(["cg", "identity"]):
        S = (
            InfluenceScorer(Ridge(alpha=1.0), damping=1e-3, curvature=name)
            .fit(X, y)
            .influence(Xq[:5], yq[:5])
        )
        offsets = disp.scatters_[j].get_offsets()
        assert_allclose(offsets[:, 0], S_ref.ravel())
        assert_allclose(offsets[:, 1], S.ravel(), rtol=1e-6, atol=1e-8)
        r, rho = _title_numbers(S_ref.ravel(), S.ravel())
        title = disp.ax_[j].get_title()
        assert f"Pearson r = {r}" in title and f"= {rho}" in title
        scale = S_ref.ravel() @ S.ravel() / (S_ref.ravel() @ S_ref.ravel())
        assert f"scale {scale:.3g}" in title
        assert disp.ax_[j].get_xlabel() == "exact scores"
        assert disp.ax_[j].get_ylabel() == f"{name} scores"
    assert disp.pearson_[0] > 0.9999  # CG solves the same system
    # default queries: the first 20 training rows
    disp = CurvatureComparisonDisplay.from_estimator(scorer, X, y, curvatures=["cg"])
    assert disp.scatters_[0].get_offsets().shape == (20 * len(X), 2)


def test_curvature_comparison_from_predictions_and_refusals(ridge):
    scorer, X, y, *_ = ridge
    rng = np.random.default_rng(0)
    ref, a, b = rng.normal(size=(3, 4, 6))
    fig, axes = plt.subplots(1, 2)
    disp = CurvatureComparisonDisplay.from_predictions(ref, {"a": a, "b": b}, ax=axes)
    assert list(disp.ax_) == list(axes)
    assert_allclose(disp.scatters_[1].get_offsets(), np.c_[ref.ravel(), b.ravel()])
    with pytest.raises(ValueError, match="one Axes per compared backend"):
        CurvatureComparisonDisplay.from_predictions(ref, {"a": a, "b": b}, ax=axes[0])
    with pytest.raises(ValueError, match="have shape"):
        CurvatureComparisonDisplay.from_predictions(ref, {"a": a[:2]})
    with pytest.raises(ValueError, match="non-empty dict"):
        CurvatureComparisonDisplay.from_predictions(ref, {})
    with pytest.raises(ValueError, match="non-empty list"):
        CurvatureComparisonDisplay.from_estimator(scorer, X, y, curvatures="cg")
    with pytest.raises(ValueError, match="fitted on"):
        CurvatureComparisonDisplay.from_estimator(
            scorer, X[:5], y[:5], curvatures=["cg"]
        )
