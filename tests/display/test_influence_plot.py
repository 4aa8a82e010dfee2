"""The influence plot: produced with Agg, labelled, the right rows marked."""

import warnings

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402

from skinfluence import InfluenceScorer  # noqa: E402
from skinfluence.display import InfluencePlotDisplay  # noqa: E402


@pytest.fixture(scope="module")
def scorer():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X.index = X.index + 500
    return InfluenceScorer(LinearRegression()).fit(X, y)


def test_plot_shows_the_most_influential_rows(scorer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        disp = InfluencePlotDisplay.from_estimator(scorer, n_labels=4)
    table = scorer.diagnostics()
    top = table["cooks_distance"].sort_values(ascending=False).index[:4]
    assert [a.get_text() for a in disp.annotations_] == [str(i) for i in top]
    assert disp.ax_.get_xlabel().startswith("Leverage")
    assert "internal" in disp.ax_.get_ylabel()
    assert disp.figure_ is disp.ax_.figure
    offsets = disp.scatter_.get_offsets()
    np.testing.assert_allclose(offsets[:, 0], table["leverage"])
    np.testing.assert_allclose(offsets[:, 1], table["studentized_residual"])
    # the largest Cook's distance gets the largest marker
    assert np.argmax(disp.scatter_.get_sizes()) == np.argmax(table["cooks_distance"])
    # Cook's contours: r^2 = D p (1 - h) / h on the line of level 1
    line = disp.contours_[1]
    h, r = line.get_xdata(), line.get_ydata()
    np.testing.assert_allclose(r**2 * h / (11 * (1 - h)), 1.0)
    plt.close("all")


def test_plot_on_given_axes_and_external_residuals(scorer):
    fig, ax = plt.subplots()
    disp = InfluencePlotDisplay.from_estimator(scorer, residual="external", ax=ax)
    assert disp.ax_ is ax and "external" in ax.get_ylabel()
    # Cook's contours are curves of the internal residual: not drawn here
    assert disp.contours_ == []
    again = disp.plot(n_labels=0)
    assert again.annotations_ == []
    plt.close("all")


def test_bad_inputs_are_refused(scorer):
    with pytest.raises(NotFittedError):
        InfluencePlotDisplay.from_estimator(InfluenceScorer(LinearRegression()))
    with pytest.raises(ValueError, match="residual must be"):
        InfluencePlotDisplay.from_estimator(scorer, residual="pearson")
    X, y = load_iris(return_X_y=True)
    multi = InfluenceScorer(LogisticRegression(max_iter=1000)).fit(X, y)
    with pytest.raises(ValueError, match="several outputs"):
        InfluencePlotDisplay.from_estimator(multi)
    plt.close("all")


def test_contours_separate_the_rows_by_cooks_distance(scorer):
    table = scorer.diagnostics()
    level = float(table["cooks_distance"].median())
    disp = InfluencePlotDisplay.from_estimator(scorer, cooks_levels=(level,))
    h, r = disp.scatter_.get_offsets().T
    bound = np.sqrt(level * 11 * (1 - h) / h)  # the drawn curve at each leverage
    outside = np.abs(r) > bound
    np.testing.assert_array_equal(outside, table["cooks_distance"].to_numpy() > level)
    plt.close("all")
