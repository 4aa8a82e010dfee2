"""Properties of influence that hold for any data, checked with hypothesis.

- permuting the training rows permutes the columns of ``influence``;
- duplicating the training set (an unpenalised model: the same optimum and
  mean curvature) gives both copies of a row the original row's column;
- the result does not depend on ``batch_size`` or on the container the data
  come in (numpy, pandas, sparse CSR, lists);
- the sign conventions: ``upweighting = -influence`` and self-influence
  ``g_i^T H^{-1} g_i >= 0`` for ``train_gradient="loss"`` at a convex optimum.

Examples are few and derandomised, so the suite stays fast and CI
deterministic.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from skinfluence import InfluenceScorer

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FAST = settings(max_examples=8, derandomize=True, deadline=None)


def _clf(seed, n):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    y = (X[:, 0] + 0.8 * rng.randn(n) > 0).astype(int)
    y[:2] = [0, 1]  # both classes
    return X, y


def _reg(seed, n):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    return X, X @ np.array([1.0, -1.0, 0.5]) + 0.5 * rng.randn(n)


def _lr():
    return LogisticRegression(tol=1e-12, max_iter=10_000)


@FAST
@given(seed=st.integers(0, 2**16), data=st.data())
def test_permuting_rows_permutes_columns(seed, data):
    X, y = _clf(seed, 20)
    perm = np.array(data.draw(st.permutations(range(20))))
    S = InfluenceScorer(_lr()).fit(X, y).influence(X[:5], y[:5])
    Sp = InfluenceScorer(_lr()).fit(X[perm], y[perm]).influence(X[:5], y[:5])
    assert_allclose(Sp, S[:, perm], rtol=1e-6, atol=1e-9)


@FAST
@given(seed=st.integers(0, 2**16))
def test_duplicating_the_training_set(seed):
    X, y = _reg(seed, 15)
    S = InfluenceScorer(LinearRegression()).fit(X, y).influence(X[:4], y[:4])
    X2, y2 = np.r_[X, X], np.r_[y, y]
    s2 = InfluenceScorer(LinearRegression()).fit(X2, y2)
    S2 = s2.influence(X[:4], y[:4])
    assert_allclose(S2[:, :15], S, rtol=1e-7, atol=1e-10)
    assert_allclose(S2[:, 15:], S, rtol=1e-7, atol=1e-10)
    # ... so removing one of two copies changes a prediction half as much
    assert s2.n_train_ == 2 * 15


@FAST
@given(
    seed=st.integers(0, 2**16),
    batch_size=st.integers(1, 25),
    curvature=st.sampled_from(["exact", "cg", "diagonal", "ef"]),
)
def test_batch_size_does_not_change_the_result(seed, batch_size, curvature):
    X, y = _clf(seed, 25)
    ref = InfluenceScorer(_lr(), curvature=curvature).fit(X, y)
    got = InfluenceScorer(_lr(), curvature=curvature, batch_size=batch_size)
    got.fit(X, y)
    assert_allclose(
        got.influence(X[:6], y[:6]), ref.influence(X[:6], y[:6]), rtol=1e-6, atol=1e-9
    )
    assert_allclose(got.self_influence_, ref.self_influence_, rtol=1e-6, atol=1e-9)


def _as(container, X):
    if container == "numpy":
        return X
    if container == "pandas":
        import pandas as pd

        return pd.DataFrame(X, columns=[f"x{k}" for k in range(X.shape[1])])
    if container == "csr":
        from scipy import sparse

        return sparse.csr_matrix(X)
    return X.tolist()


@FAST
@given(
    seed=st.integers(0, 2**16),
    container=st.sampled_from(["pandas", "csr", "list"]),
    model=st.sampled_from(["logistic", "ridge"]),
)
def test_container_type_does_not_change_the_result(seed, container, model):
    if model == "logistic":
        (X, y), est = _clf(seed, 20), _lr
    else:
        (X, y), est = _reg(seed, 20), lambda: Ridge(alpha=1.0)
    ref = InfluenceScorer(est()).fit(X, y).influence(X[:5], y[:5])
    Xc = _as(container, X)
    yc = y.tolist() if container == "list" else y
    got = InfluenceScorer(est()).fit(Xc, yc)
    Q = _as(container, X[:5])
    assert_allclose(got.influence(Q, y[:5]), ref, rtol=1e-6, atol=1e-10)


@FAST
@given(
    seed=st.integers(0, 2**16),
    curvature=st.sampled_from(["exact", "cg", "ggn", "ef", "diagonal", "identity"]),
    target=st.sampled_from(["loss", "prediction"]),
)
def test_sign_conventions(seed, curvature, target):
    X, y = _clf(seed, 20)
    s = InfluenceScorer(_lr(), curvature=curvature).fit(X, y)
    assert_allclose(
        s.upweighting(X[:4], y[:4], target=target),
        -s.influence(X[:4], y[:4], target=target),
    )
    # a positive definite curvature: g^T M^{-1} g >= 0, and it is the diagonal
    # of the train-on-train influence
    assert np.all(s.self_influence_ >= -1e-12)
    assert_allclose(
        s.self_influence_, np.diag(s.influence(X, y)), rtol=1e-6, atol=1e-12
    )
