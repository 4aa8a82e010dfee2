"""The cleaners on the user's containers, their reachable defaults, and weights.

Ground truths: the same pipeline on the equivalent numeric input (a
``DataFrame`` vs an object array selected by position, documents vs the
vectorised matrix, sparse vs dense), scikit-learn's own fits (per-sample log
loss, weighted and subset refits), a manual clean-then-fit loop for
``cross_val_score``, and integer weights vs repeated rows.
"""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn import config_context
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skinfluence import (
    CleanedClassifier,
    CleanedRegressor,
    Finetuner,
    NoisyLabelDetector,
    Relabeler,
)

TIGHT = {"tol": 1e-12, "max_iter": 10_000}
CV = KFold(3, shuffle=True, random_state=0)


def _lr(**kw):
    return LogisticRegression(**{**TIGHT, **kw})


# -- data ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame():
    """A categorical string column and two numeric ones; 10% flipped labels."""
    rng = np.random.default_rng(0)
    n = 90
    df = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "blue"], n),
            "size": rng.normal(size=n),
            "weight": rng.normal(size=n),
        },
        index=rng.permutation(1000)[:n],  # a non-default index must not matter
    )
    logit = 1.5 * df["size"] - df["weight"] + 2.0 * (df["color"] == "red") - 0.7
    y = np.array(logit + 0.5 * rng.normal(size=n) > 0, dtype=int)
    y[rng.choice(n, 9, replace=False)] ^= 1
    return df, y


def _by_name():
    return make_pipeline(
        ColumnTransformer(
            [
                ("cat", OneHotEncoder(), ["color"]),
                ("num", StandardScaler(), ["size", "weight"]),
            ]
        ),
        _lr(),
    )


def _by_position():
    return make_pipeline(
        ColumnTransformer(
            [("cat", OneHotEncoder(), [0]), ("num", StandardScaler(), [1, 2])]
        ),
        _lr(),
    )


@pytest.fixture(scope="module")
def docs():
    """Short generated reviews; the label is the majority sentiment word."""
    rng = np.random.default_rng(1)
    good, bad = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
    neutral = ["movie", "plot", "actor", "scene", "music"]
    texts, labels = [], []
    for _ in range(72):
        k = rng.integers(0, 6)
        words = list(rng.choice(good, k)) + list(rng.choice(bad, 5 - k))
        words += list(rng.choice(neutral, 3))
        texts.append(" ".join(rng.permutation(words)))
        labels.append(int(k >= 3))
    y = np.asarray(labels)
    y[rng.choice(len(y), 7, replace=False)] ^= 1
    return texts, y


def _text():
    return make_pipeline(TfidfVectorizer(), _lr(C=10.0))


def _cleaners(pipe):
    """Every cleaner on ``pipe``: two detectors and a relabeler."""
    return {
        "self_influence": NoisyLabelDetector(pipe, contamination=0.1),
        "loss": NoisyLabelDetector(pipe, method="loss", contamination=0.1),
        "relabeler": Relabeler(pipe, method="label_influence", max_fraction=0.2),
    }


def _scores(cleaner):
    if isinstance(cleaner, Relabeler):
        return np.column_stack([cleaner.suspicion_, cleaner.relabel_gain_])
    return cleaner.scores_


# -- the containers survive ----------------------------------------------------


@pytest.mark.parametrize("kind", ["self_influence", "loss", "relabeler"])
def test_dataframe_by_name_scores_as_the_array_by_position(frame, kind):
    df, y = frame
    named = _cleaners(_by_name())[kind].fit(df, y)
    plain = _cleaners(_by_position())[kind].fit(df.to_numpy(dtype=object), y)
    assert_allclose(_scores(named), _scores(plain), rtol=1e-9, atol=1e-12)
    assert named.n_features_in_ == 3
    assert_array_equal(named.feature_names_in_, df.columns)
    assert not hasattr(plain, "feature_names_in_")
    Xk, yk = named.fit_resample(df, y)
    assert isinstance(Xk, pd.DataFrame)
    assert_array_equal(Xk.index, df.index[named.sample_indices_])


def test_loss_scores_are_sklearns_log_loss_through_the_pipelines(frame, docs):
    # independent of the adapter: -log p(y_i) from scikit-learn's own fit
    for X, y, pipe in [(*frame, _by_name()), (*docs, _text())]:
        det = NoisyLabelDetector(pipe, method="loss").fit(X, y)
        proba = clone(pipe).fit(X, y).predict_proba(X)
        assert_allclose(det.scores_, -np.log(proba[np.arange(len(y)), y]), rtol=1e-6)


@pytest.mark.parametrize("kind", ["self_influence", "loss", "relabeler"])
def test_documents_score_as_their_tfidf_matrix(docs, kind):
    texts, y = docs
    on_text = _cleaners(_text())[kind].fit(texts, y)
    Z = TfidfVectorizer().fit_transform(texts)  # the pipeline's fixed features
    on_matrix = _cleaners(_lr(C=10.0))[kind].fit(Z, y)
    assert_allclose(_scores(on_text), _scores(on_matrix), rtol=1e-9, atol=1e-12)
    assert not hasattr(on_text, "n_features_in_")
    Xk, _ = on_text.fit_resample(texts, y)
    assert Xk == [texts[i] for i in on_text.sample_indices_]


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_scores_equal_dense(breast_cancer, fmt):
    X, _, y, _ = breast_cancer
    X = np.where(np.abs(X) < 0.5, 0.0, X)[:150]  # about 40% zeros
    y = y[:150]
    for cleaner in _cleaners(_lr()).values():
        dense = clone(cleaner).fit(X, y)
        sp = clone(cleaner)
        Xk, yk = sp.fit_resample(sparse.coo_matrix(X).asformat(fmt), y)
        scale = np.abs(_scores(dense)).max()  # the two solves agree to ~1e-9
        assert_allclose(_scores(sp), _scores(dense), rtol=1e-6, atol=1e-8 * scale)
        assert sparse.issparse(Xk)
        assert_array_equal(Xk.toarray(), X[sp.sample_indices_])


def _manual_cv(cleaner, pipe, X, y):
    """Clean each training fold, fit scikit-learn's pipeline on what is kept."""
    out = []
    take = (lambda A, i: A.iloc[i]) if isinstance(X, pd.DataFrame) else None
    for train, test in CV.split(np.zeros(len(y))):
        Xtr = take(X, train) if take else [X[i] for i in train]
        Xte = take(X, test) if take else [X[i] for i in test]
        Xc, yc = clone(cleaner).fit_resample(Xtr, y[train])
        out.append(clone(pipe).fit(Xc, yc).score(Xte, y[test]))
    return np.asarray(out)


@pytest.mark.parametrize("data", ["frame", "docs"])
@pytest.mark.parametrize("kind", ["self_influence", "loss", "relabeler"])
def test_cleaned_classifier_in_cross_val_score_and_grid_search(request, data, kind):
    X, y = request.getfixturevalue(data)
    pipe = _by_name() if data == "frame" else _text()
    cleaner = _cleaners(pipe)[kind]
    model = CleanedClassifier(pipe, cleaner)
    scores = cross_val_score(model, X, y, cv=CV)
    assert_allclose(scores, _manual_cv(cleaner, pipe, X, y))

    param = "max_fraction" if kind == "relabeler" else "contamination"
    grid = GridSearchCV(model, {f"cleaner__{param}": [0.05, 0.2]}, cv=CV).fit(X, y)
    for value, mean in zip(
        grid.cv_results_[f"param_cleaner__{param}"],
        grid.cv_results_["mean_test_score"],
        strict=True,
    ):
        manual = _manual_cv(clone(cleaner).set_params(**{param: value}), pipe, X, y)
        assert mean == pytest.approx(manual.mean())
    best = grid.best_estimator_
    assert getattr(best.cleaner_, param) == grid.best_params_[f"cleaner__{param}"]
    assert_array_equal(best.predict(X[:5]), best.estimator_.predict(X[:5]))


def test_cleaned_classifier_keeps_feature_names_and_rows(frame):
    df, y = frame
    model = CleanedClassifier(_by_name(), _cleaners(_by_name())["loss"]).fit(df, y)
    assert_array_equal(model.feature_names_in_, df.columns)
    assert model.n_features_in_ == 3
    keep = model.cleaner_.sample_indices_
    ref = _by_name().fit(df.iloc[keep], y[keep])
    assert_allclose(model.predict_proba(df), ref.predict_proba(df), rtol=1e-9)


# -- defaults reachable --------------------------------------------------------


def test_grid_search_reaches_the_default_cleaner():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 * rng.normal(size=60)
    y[:4] += 6.0  # outlying targets to clean
    grid = GridSearchCV(
        CleanedRegressor(Ridge()), {"cleaner__contamination": [0.05, 0.2]}, cv=CV
    ).fit(X, y)
    # the documented default, spelled out, scores the same per candidate
    for c, mean in zip([0.05, 0.2], grid.cv_results_["mean_test_score"], strict=True):
        explicit = CleanedRegressor(
            Ridge(), NoisyLabelDetector(LinearRegression(), contamination=c)
        )
        assert mean == pytest.approx(cross_val_score(explicit, X, y, cv=CV).mean())
    best = grid.best_estimator_
    assert best.cleaner_.contamination == grid.best_params_["cleaner__contamination"]
    assert best.cleaner_.noisy_mask_.sum() == round(best.cleaner_.contamination * 60)


def test_set_params_materialises_none_defaults_and_clone_round_trips():
    model = CleanedClassifier()
    assert clone(model).get_params(deep=False) == {
        "estimator": None,
        "cleaner": None,
        "memory_budget": None,
        "n_jobs": None,
    }
    model.set_params(cleaner__contamination=0.1, estimator__C=0.5)
    assert isinstance(model.cleaner, NoisyLabelDetector)
    assert model.cleaner.contamination == 0.1
    assert model.estimator.get_params() == LogisticRegression(C=0.5).get_params()
    again = clone(model)
    assert again.get_params(deep=True)["cleaner__contamination"] == 0.1
    # nested defaults: the cleaner's own estimator and finetuner
    nested = CleanedClassifier().set_params(
        cleaner__estimator__C=0.3, cleaner__finetune__n_steps=50
    )
    assert nested.cleaner.estimator.C == 0.3
    assert isinstance(nested.cleaner.finetune, Finetuner)
    assert nested.cleaner.finetune.n_steps == 50
    # the default of CleanedRegressor's cleaner is the documented one
    reg = CleanedRegressor().set_params(cleaner__contamination=0.2)
    assert isinstance(reg.cleaner.estimator, LinearRegression)
    # a None passed in the same call is replaced, an object passed is used
    given = NoisyLabelDetector(method="loss")
    both = CleanedClassifier().set_params(cleaner=given, cleaner__contamination=0.3)
    assert both.cleaner is given and given.contamination == 0.3
    none = CleanedClassifier().set_params(cleaner=None, cleaner__contamination=0.3)
    assert none.cleaner.contamination == 0.3
    with pytest.raises(ValueError, match="bogus"):
        CleanedClassifier().set_params(cleaner__bogus=1)


def test_detector_default_estimator_reachable_in_grid_search(breast_cancer):
    X, _, y, _ = breast_cancer
    model = CleanedClassifier(cleaner=NoisyLabelDetector(contamination=0.1))
    grid = GridSearchCV(model, {"cleaner__estimator__C": [0.1, 1.0]}, cv=CV)
    grid.fit(X[:120], y[:120])
    best_C = grid.best_params_["cleaner__estimator__C"]
    assert grid.best_estimator_.cleaner_.scorer_.estimator_.C == best_C


# -- sample weights ------------------------------------------------------------


@pytest.fixture(scope="module")
def small(breast_cancer):
    X, Xv, y, yv = breast_cancer
    rng = np.random.default_rng(3)
    rows = rng.choice(len(y), 50, replace=False)
    X, y = X[rows][:, :5], y[rows].copy()
    y[:4] ^= 1
    w = rng.integers(0, 4, size=len(y))  # 0..3, zeros included
    w[:4] = [2, 3, 1, 0]
    return X, y, w, Xv[:40, :5], yv[:40]


def _repeat(X, y, w):
    """The repeated-rows data set and, per row, the index of its first copy."""
    first = np.concatenate([[0], np.cumsum(w)[:-1]])
    return np.repeat(X, w, axis=0), np.repeat(y, w), first


@pytest.mark.parametrize(
    "method", ["self_influence", "loss", "validation_influence", "vm"]
)
def test_integer_weights_are_repeated_rows(small, method):
    # scikit-learn's weighted fit and its fit on repeated rows share their
    # optimum (weights multiply the loss terms of a summed objective).  On
    # skinfluence's mean scale the two objectives are J_w = (1/n) sum_i w_i l_i
    # + penalty/n and J_rep = (1/N) sum_copies l + penalty/N with N = sum w, so
    # H_rep = (n/N) H_w.  Row i's k = w_i copies, taken together, have the
    # gradient k g_i.  Hence, copy by copy in the repeated fit (s_rep):
    #   loss:           w_i l_i               = k * s_rep
    #   self-influence: (w_i g)^T H_w^-1 (w_i g) = (n/N) k^2 * s_rep
    #   validation:     v^T H_w^-1 (w_i g)      = (n/N) k * s_rep
    #   vm:             (w_i g~)^T H~_val^-1 (w_i g~) = k^2 * s_rep (H~_val
    #                   is the validation set's, whichever fit it starts from)
    # and a row of weight 0 scores 0, as a row that is not there.
    X, y, w, Xv, yv = small
    n, N = len(y), w.sum()
    kw = {"X_val": Xv, "y_val": yv} if method in ("validation_influence", "vm") else {}
    extra = {"finetune": Finetuner(n_steps=300), "random_state": 0}
    det = NoisyLabelDetector(_lr(), method=method, **(extra if method == "vm" else {}))
    weighted = clone(det).fit(X, y, sample_weight=w, **kw).scores_
    Xr, yr, first = _repeat(X, y, w)
    repeated = clone(det).fit(Xr, yr, **kw).scores_
    factor = {
        "loss": w,
        "self_influence": n / N * w**2,
        "validation_influence": n / N * w,
        "vm": w**2,
    }[method]
    pos = w > 0
    expected = factor[pos] * repeated[first[pos]]
    assert_allclose(
        weighted[pos], expected, rtol=1e-5, atol=1e-9 * np.abs(expected).max()
    )
    assert_array_equal(weighted[~pos], 0.0)
    # fit_predict and fit_resample take the same weights
    flags = clone(det).fit_predict(X, y, sample_weight=w, **kw)
    assert_array_equal(
        flags == -1, clone(det).fit(X, y, sample_weight=w, **kw).noisy_mask_
    )


def test_relabeler_gain_with_integer_weights_is_repeated_rows(small):
    # label-change influence: row i's gradient change on relabelling is
    # w_i (g_c - g_y), so gain_w = (n/N) w_i gain_rep per copy (as validation
    # influence above).
    X, y, w, Xv, yv = small
    n, N = len(y), w.sum()
    rel = Relabeler(_lr(), method="label_influence")
    weighted = clone(rel).fit(X, y, sample_weight=w, X_val=Xv, y_val=yv)
    Xr, yr, first = _repeat(X, y, w)
    repeated = clone(rel).fit(Xr, yr, X_val=Xv, y_val=yv)
    pos = w > 0
    assert_allclose(
        weighted.relabel_gain_[pos],
        n / N * w[pos] * repeated.relabel_gain_[first[pos]],
        rtol=1e-5,
    )
    # a row of zero weight has no gradient to change: no gain, its own label
    assert_array_equal(weighted.relabel_gain_[~pos], 0.0)
    assert_array_equal(weighted.suggested_labels_[~pos], y[~pos])


@pytest.mark.parametrize("method", ["label_influence", "vm"])
def test_relabeler_leaves_rows_of_zero_weight_alone(small, method):
    X, y, w, Xv, yv = small
    extra = {"finetune": Finetuner(n_steps=300), "random_state": 0}
    rel = Relabeler(_lr(), method=method, max_fraction=0.3)
    rel.set_params(**(extra if method == "vm" else {}))
    rel.fit(X, y, sample_weight=w, X_val=Xv, y_val=yv)
    pos = w > 0
    assert not rel.relabeled_mask_[~pos].any()
    # max_fraction counts the rows in the fit: the suspects are the top
    # floor(0.3 * n_pos) of them
    order = np.argsort(-rel.suspicion_, kind="stable")
    suspects = order[pos[order]][: int(0.3 * pos.sum())]
    assert_array_equal(
        np.flatnonzero(rel.relabeled_mask_),
        np.sort(suspects[rel.relabel_gain_[suspects] > 0]),
    )
    changed = rel.y_relabeled_ != y
    assert_array_equal(changed, rel.relabeled_mask_)
    if method == "vm":
        assert_array_equal(rel.suggested_labels_[~pos], y[~pos])


@pytest.mark.parametrize("method", ["self_influence", "loss"])
@pytest.mark.parametrize("contamination", ["auto", 0.1])
def test_zero_weight_is_removal(small, method, contamination):
    # A zero weight flags what leaving the row out does, and the refit equals
    # scikit-learn's fit on the kept rows of positive weight.
    X, y, _, _, _ = small
    w = np.ones(len(y))
    # 8 of 50: a share of 0.1 flags round(4.2) = 4 rows, of all rows it would be 5
    w[[3, 10, 11, 17, 22, 30, 41, 47]] = 0.0
    det = NoisyLabelDetector(_lr(), method=method, contamination=contamination)
    model = CleanedClassifier(_lr(), det).fit(X, y, sample_weight=w)
    pos = w > 0
    without = clone(det).fit(X[pos], y[pos])
    assert_array_equal(model.cleaner_.noisy_mask_[pos], without.noisy_mask_)
    assert not model.cleaner_.noisy_mask_[~pos].any()
    kept = np.flatnonzero(pos)[without.sample_indices_]
    ref = _lr().fit(X[kept], y[kept])
    assert_allclose(model.estimator_.coef_, ref.coef_, rtol=1e-6, atol=1e-8)
    assert_allclose(model.estimator_.intercept_, ref.intercept_, rtol=1e-6, atol=1e-8)


def _routing(on):
    return config_context(enable_metadata_routing=on)


@pytest.mark.parametrize("routing", [False, True])
@pytest.mark.parametrize("pipeline", [False, True])
def test_weights_reach_cleaner_and_the_refit_on_kept_rows(small, routing, pipeline):
    X, y, _, _, _ = small
    w = np.random.default_rng(4).uniform(0.2, 3.0, size=len(y))
    est = make_pipeline(StandardScaler(), _lr()) if pipeline else _lr()
    det = NoisyLabelDetector(_lr(), contamination=0.1)
    with _routing(routing):
        if routing and pipeline:
            est[0].set_fit_request(sample_weight=False)
            est[-1].set_fit_request(sample_weight=True)
        elif routing:
            est.set_fit_request(sample_weight=True)
        if routing:
            det.set_fit_request(sample_weight=True)
        model = CleanedClassifier(est, det).fit(X, y, sample_weight=w)
    # the cleaner's model is scikit-learn's weighted fit
    scored = model.cleaner_.scorer_.estimator_
    assert_allclose(scored.coef_, _lr().fit(X, y, sample_weight=w).coef_, rtol=1e-6)
    # the refit is scikit-learn's fit on the kept rows with their weights
    keep = model.cleaner_.sample_indices_
    assert len(keep) == len(y) - round(0.1 * len(y))
    ref = clone(est)
    if pipeline:
        ref.fit(X[keep], y[keep], logisticregression__sample_weight=w[keep])
    else:
        ref.fit(X[keep], y[keep], sample_weight=w[keep])
    assert_allclose(model.predict_proba(X), ref.predict_proba(X), rtol=1e-6)


def test_routing_sends_weights_only_where_requested(small):
    X, y, _, _, _ = small
    w = np.random.default_rng(5).uniform(0.2, 3.0, size=len(y))
    with _routing(True):
        est = _lr().set_fit_request(sample_weight=True)
        det = NoisyLabelDetector(_lr(), contamination=0.1)
        det.set_fit_request(sample_weight=False)
        model = CleanedClassifier(est, det).fit(X, y, sample_weight=w)
    scored = model.cleaner_.scorer_.estimator_
    assert_allclose(scored.coef_, _lr().fit(X, y).coef_, rtol=1e-6)
    keep = model.cleaner_.sample_indices_
    ref = _lr().fit(X[keep], y[keep], sample_weight=w[keep])
    assert_allclose(model.estimator_.coef_, ref.coef_, rtol=1e-6)


class _NoIndices(BaseEstimator):
    """A cleaner that takes weights but does not say which rows it kept."""

    def fit(self, X, y, sample_weight=None):
        return self

    def fit_resample(self, X, y, sample_weight=None):
        return X[1:], y[1:]


def test_weights_refused_clearly_where_they_cannot_go(small):
    from imblearn.under_sampling import RandomUnderSampler

    X, y, _, _, _ = small
    w = np.ones(len(y))
    with pytest.raises(TypeError, match=r"estimator \(KNeighborsClassifier\)"):
        CleanedClassifier(KNeighborsClassifier()).fit(X, y, sample_weight=w)
    with pytest.raises(TypeError, match=r"cleaner \(RandomUnderSampler\)"):
        CleanedClassifier(cleaner=RandomUnderSampler()).fit(X, y, sample_weight=w)
    with pytest.raises(ValueError, match="sample_indices_"):
        CleanedClassifier(cleaner=_NoIndices()).fit(X, y, sample_weight=w)
    with pytest.raises(ValueError, match="non-negative"):
        CleanedClassifier().fit(X, y, sample_weight=-w)
    with pytest.raises(ValueError, match="shape"):
        NoisyLabelDetector().fit(X, y, sample_weight=w[1:])


def test_routing_sends_weights_and_validation_set_to_the_cleaner(small):
    X, y, w, Xv, yv = small
    det = NoisyLabelDetector(_lr(), method="validation_influence", contamination=0.1)
    direct = clone(det).fit(X, y, sample_weight=w, X_val=Xv, y_val=yv)
    with _routing(True):
        routed_det = clone(det).set_fit_request(
            sample_weight=True, X_val=True, y_val=True
        )
        est = _lr().set_fit_request(sample_weight=True)
        model = CleanedClassifier(est, routed_det)
        model.fit(X, y, sample_weight=w, X_val=Xv, y_val=yv)
    assert_allclose(model.cleaner_.scores_, direct.scores_, rtol=1e-9)
    keep = direct.sample_indices_
    ref = _lr().fit(X[keep], y[keep], sample_weight=w[keep])
    assert_allclose(model.estimator_.coef_, ref.coef_, rtol=1e-6)
