"""InfluenceScorer: the scikit-learn contract and clear errors."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from skinfluence import InfluenceScorer
from skinfluence.curvature import CGCurvature
from skinfluence.exceptions import NotAtOptimumWarning


@pytest.fixture(scope="module")
def fitted(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    return InfluenceScorer(LogisticRegression(C=0.1)).fit(Xtr, ytr), Xte, yte


def test_estimator_type_follows_wrapped_model():
    assert is_classifier(InfluenceScorer())
    assert is_classifier(InfluenceScorer(LogisticRegression()))
    assert is_regressor(InfluenceScorer(Ridge()))
    assert is_classifier(
        InfluenceScorer(make_pipeline(StandardScaler(), LogisticRegression()))
    )


def test_shapes_and_delegation(fitted, breast_cancer):
    scorer, Xte, yte = fitted
    Xtr, _, ytr, _ = breast_cancer
    S = scorer.influence(Xte[:4], yte[:4])
    assert S.shape == (4, scorer.n_train_) == (4, len(ytr))
    assert scorer.transform(Xte[:3]).shape == (3, len(ytr))
    assert scorer.self_influence_.shape == (len(ytr),)
    assert np.all(scorer.self_influence_ >= 0)
    assert scorer.parameter_change([1, 2]).shape == (2, Xtr.shape[1] + 1)
    assert_allclose(scorer.predict_proba(Xte), scorer.estimator_.predict_proba(Xte))
    assert scorer.score(Xte, yte) == scorer.estimator_.score(Xte, yte)
    assert_allclose(scorer.classes_, [0, 1])
    names = scorer.get_feature_names_out()
    assert names[0] == "influence_train0" and len(names) == len(ytr)


def test_self_influence_is_diagonal_of_training_influence(fitted, breast_cancer):
    scorer, _, _ = fitted
    Xtr, _, ytr, _ = breast_cancer
    S = scorer.influence(Xtr[:10], ytr[:10])
    assert_allclose(np.diag(S[:, :10]), scorer.self_influence_[:10], rtol=1e-10)


def test_batch_size_does_not_change_results(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    a = InfluenceScorer(LogisticRegression()).fit(Xtr, ytr)
    b = InfluenceScorer(LogisticRegression(), batch_size=11).fit(Xtr, ytr)
    assert len(ytr) % 11 and len(ytr) > 11  # a partial last chunk
    assert_allclose(a.influence(Xte[:20], yte[:20]), b.influence(Xte[:20], yte[:20]))
    assert_allclose(a.self_influence_, b.self_influence_)


def test_pipeline_inside_equals_preprocessed_outside(wine):
    Xtr, Xte, ytr, yte = wine
    raw_tr, raw_te = Xtr * 5 + 2, Xte * 5 + 2
    inner = InfluenceScorer(make_pipeline(StandardScaler(), LogisticRegression()))
    inner.fit(raw_tr, ytr)
    scaler = StandardScaler().fit(raw_tr)
    outer = make_pipeline(scaler, InfluenceScorer(LogisticRegression())).fit(
        raw_tr, ytr
    )
    assert_allclose(
        inner.influence(raw_te, yte),
        outer[-1].influence(scaler.transform(raw_te), yte),
        rtol=1e-8,
    )


def test_frozen_estimator_is_not_refitted(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    model = LogisticRegression(C=0.1).fit(Xtr, ytr)
    coef = model.coef_.copy()
    scorer = InfluenceScorer(FrozenEstimator(model)).fit(Xtr, ytr)
    assert scorer.estimator_.estimator is model
    assert_allclose(model.coef_, coef)
    plain = InfluenceScorer(LogisticRegression(C=0.1)).fit(Xtr, ytr)
    assert_allclose(scorer.influence(Xte, yte), plain.influence(Xte, yte), rtol=1e-6)


def test_frozen_model_on_other_data_warns(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    model = LogisticRegression().fit(Xtr[:100], ytr[:100])
    with pytest.warns(NotAtOptimumWarning, match="not at an optimum"):
        InfluenceScorer(FrozenEstimator(model)).fit(Xtr, ytr)


def test_unconverged_model_warns(digits):
    Xtr, _, ytr, _ = digits
    with pytest.warns(NotAtOptimumWarning):
        InfluenceScorer(LogisticRegression(max_iter=2)).fit(Xtr, ytr)


def test_clone_and_nested_params():
    scorer = InfluenceScorer(LogisticRegression(), curvature=CGCurvature(maxiter=5))
    scorer.set_params(curvature__maxiter=50, estimator__C=3.0)
    cloned = clone(scorer)
    assert cloned.curvature.maxiter == 50 and cloned.estimator.C == 3.0
    assert cloned.curvature is not scorer.curvature


def test_grid_search_over_damping_and_curvature(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    pipe = make_pipeline(StandardScaler(), InfluenceScorer(LogisticRegression()))
    grid = GridSearchCV(
        pipe,
        {
            "influencescorer__damping": [0.0, 1e-2],
            "influencescorer__curvature": ["exact", "cg"],
        },
        cv=3,
    ).fit(Xtr, ytr)
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert grid.best_estimator_[-1].curvature_ is not None


def test_cross_val_score_and_string_labels(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    labels = np.array(["benign", "malignant"])[ytr]
    scores = cross_val_score(InfluenceScorer(LogisticRegression()), Xtr, labels, cv=3)
    assert scores.min() > 0.9
    scorer = InfluenceScorer(LogisticRegression()).fit(Xtr, labels)
    assert list(scorer.classes_) == ["benign", "malignant"]
    assert scorer.influence(Xtr[:3], labels[:3]).shape == (3, len(labels))


def test_regression_prediction_needs_single_output(diabetes):
    Xtr, _, ytr, _ = diabetes
    Y = np.column_stack([ytr, -ytr])
    scorer = InfluenceScorer(Ridge()).fit(Xtr, Y)
    assert scorer.influence(Xtr[:2], Y[:2]).shape == (2, len(ytr))
    with pytest.raises(ValueError, match="scalar output"):
        scorer.transform(Xtr[:2])


# -- clear errors for bad input -------------------------------------------


def test_nan_in_training_data(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    X = Xtr.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        InfluenceScorer(LogisticRegression()).fit(X, ytr)


def test_inf_in_query(fitted):
    scorer, Xte, yte = fitted
    X = Xte[:2].copy()
    X[1, 3] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        scorer.influence(X, yte[:2])


def test_query_shape_mismatch(fitted):
    scorer, Xte, yte = fitted
    with pytest.raises(ValueError, match="features"):
        scorer.influence(Xte[:, :5], yte)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        scorer.influence(Xte[:5], yte[:4])


def test_y_missing(fitted, breast_cancer):
    scorer, Xte, _ = fitted
    Xtr, _, _, _ = breast_cancer
    with pytest.raises(ValueError, match="requires y"):
        InfluenceScorer().fit(Xtr, None)
    with pytest.raises(ValueError, match="needs y"):
        scorer.influence(Xte[:2])


def test_single_class(breast_cancer):
    Xtr, _, _, _ = breast_cancer
    with pytest.raises(ValueError, match="class"):
        InfluenceScorer().fit(Xtr, np.zeros(len(Xtr)))


def test_bad_parameters(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    with pytest.raises(ValueError, match="damping"):
        InfluenceScorer(damping=-1.0).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="curvature"):
        InfluenceScorer(curvature="hessian-free").fit(Xtr, ytr)
    with pytest.raises(ValueError, match="target"):
        InfluenceScorer().fit(Xtr, ytr).influence(Xtr[:2], ytr[:2], target="params")


def test_unsupported_estimator(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    with pytest.raises(TypeError, match="Supported: LinearRegression, Ridge"):
        InfluenceScorer(LinearSVC()).fit(Xtr, ytr)


def test_unfitted_frozen_estimator(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    with pytest.raises(Exception, match="not fitted"):
        InfluenceScorer(FrozenEstimator(LogisticRegression())).fit(Xtr, ytr)


def test_unfitted_scorer_raises():
    with pytest.raises(NotFittedError, match="not fitted"):
        InfluenceScorer().influence(np.ones((2, 3)), [0, 1])
    assert not hasattr(InfluenceScorer(), "self_influence_")


def test_total_gradient_matches_koh_liang_refit(breast_cancer):
    # "total" = loss + L2 gradient per point: the exact first-order shift when
    # the per-sample regularisation stays fixed, i.e. refitting without i at
    # C' = 1 / ((n - 1) lambda) (Koh & Liang's LOO).
    Xtr, _, ytr, _ = breast_cancer
    n, lam = len(ytr), 0.1
    est = LogisticRegression(C=1 / (lam * n), tol=1e-12, max_iter=10_000)
    scorer = InfluenceScorer(est, train_gradient="total").fit(Xtr, ytr)
    G = scorer.adapter_.train_grads(total=True)
    assert np.linalg.norm(G.mean(axis=0)) < 1e-6 * np.linalg.norm(G, axis=1).mean()
    idx = np.array([0, 3, 17, 120, 301])
    predicted = scorer.parameter_change(idx)
    actual = []
    for i in idx:
        keep = np.arange(n) != i
        refit = LogisticRegression(C=1 / (lam * (n - 1)), tol=1e-12, max_iter=10_000)
        refit.fit(Xtr[keep], ytr[keep])
        actual.append(
            np.append(refit.coef_, refit.intercept_) - scorer.adapter_.params()
        )
    actual = np.array(actual)
    assert np.corrcoef(predicted.ravel(), actual.ravel())[0, 1] > 0.99
    slope = predicted.ravel() @ actual.ravel() / (predicted.ravel() @ predicted.ravel())
    assert 0.9 < slope < 1.15
    # self-influence under "total" is the diagonal of the training influence
    S = scorer.influence(Xtr[:8], ytr[:8])
    assert_allclose(np.diag(S[:, :8]), scorer.self_influence_[:8], rtol=1e-10)


def test_refit_resets_cached_and_stale_state(breast_cancer, diabetes):
    Xtr, _, ytr, _ = breast_cancer
    scorer = InfluenceScorer(LogisticRegression()).fit(Xtr[:200], ytr[:200])
    first = scorer.self_influence_
    scorer.fit(Xtr[200:], ytr[200:])
    fresh = InfluenceScorer(LogisticRegression()).fit(Xtr[200:], ytr[200:])
    assert len(scorer.self_influence_) == len(fresh.self_influence_) != len(first)
    assert_allclose(scorer.self_influence_, fresh.self_influence_)
    scorer.set_params(train_gradient="total")  # no refit: fitted state unchanged
    assert_allclose(
        scorer.influence(Xtr[:2], ytr[:2]), fresh.influence(Xtr[:2], ytr[:2])
    )
    Xd, _, yd, _ = diabetes
    scorer.set_params(estimator=Ridge()).fit(Xd, yd)
    assert not hasattr(scorer, "classes_")


def test_self_influence_not_computed_by_repr(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    scorer = InfluenceScorer(LogisticRegression()).fit(Xtr, ytr)
    scorer._repr_html_()
    assert "self_influence_" not in vars(scorer)
    assert scorer.self_influence_.shape == (len(ytr),)
    assert "self_influence_" in vars(scorer)


def test_prediction_target_is_sklearn_log_proba(wine, breast_cancer):
    # f = log-probability of the predicted class, pinned to sklearn's own.
    for Xtr, Xte, ytr, _ in (wine, breast_cancer):
        scorer = InfluenceScorer(LogisticRegression()).fit(Xtr, ytr)
        expected = np.log(scorer.predict_proba(Xte)).max(axis=1)
        got = scorer.adapter_.prediction(Xte)
        assert_allclose(got, expected, rtol=1e-8, atol=1e-12)


def test_indices_validation(fitted):
    scorer, _, _ = fitted
    n = scorer.n_train_
    mask = np.zeros(n, bool)
    mask[[2, 5]] = True
    assert_allclose(scorer.parameter_change(mask), scorer.parameter_change([2, 5]))
    assert_allclose(scorer.parameter_change([-1]), scorer.parameter_change([n - 1]))
    with pytest.raises(TypeError, match="integers"):
        scorer.parameter_change([1.7])
    with pytest.raises(IndexError):
        scorer.parameter_change([n])


def test_text_pipeline_accepts_1d_input():
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [
        "good film",
        "bad film",
        "great plot",
        "awful plot",
        "good plot",
        "bad acting",
    ]
    labels = [1, 0, 1, 0, 1, 0]
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10.0))
    scorer = InfluenceScorer(pipe).fit(docs, labels)
    assert scorer.influence(["good acting"], [1]).shape == (1, 6)


def test_integer_labels_against_string_classes(breast_cancer):
    Xtr, _, ytr, _ = breast_cancer
    labels = np.array(["benign", "malignant"])[ytr]
    scorer = InfluenceScorer(LogisticRegression()).fit(Xtr, labels)
    with pytest.raises(ValueError, match="not seen during fit"):
        scorer.influence(Xtr[:2], [0, 1])


def test_linear_regression_default_damping_zero_ok(diabetes):
    Xtr, Xte, ytr, yte = diabetes
    scorer = InfluenceScorer(LinearRegression()).fit(Xtr, ytr)
    assert scorer.curvature_.method_ == "cholesky"
    assert np.isfinite(scorer.influence(Xte, yte)).all()


def test_default_estimator_is_reachable_by_grid_search(breast_cancer):
    from sklearn.model_selection import GridSearchCV

    X, _, y, _ = breast_cancer
    X, y = X[:120], y[:120]
    search = GridSearchCV(InfluenceScorer(), {"estimator__C": [0.1, 1.0]}, cv=2)
    search.fit(X, y)
    assert search.best_estimator_.estimator_.C in (0.1, 1.0)
    assert InfluenceScorer().get_params()["estimator"] is None  # clone round-trips


def test_refit_on_text_forgets_the_numeric_feature_count(breast_cancer):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    X, _, y, _ = breast_cancer
    scorer = InfluenceScorer(LogisticRegression()).fit(X[:60], y[:60])
    docs = ["good film", "bad film", "good plot", "bad plot"] * 5
    labels = [1, 0, 1, 0] * 5
    scorer.set_params(estimator=make_pipeline(TfidfVectorizer(), LogisticRegression()))
    scorer.fit(docs, labels)
    assert not hasattr(scorer, "n_features_in_")
    assert scorer.influence(["good film"], [1]).shape == (1, 20)


def test_group_influence_before_fit_is_not_fitted(breast_cancer):
    from sklearn.exceptions import NotFittedError

    X, _, y, _ = breast_cancer
    with pytest.raises(NotFittedError):
        InfluenceScorer().group_influence(X[:2], y[:2], [0] * 10, method="newton")
