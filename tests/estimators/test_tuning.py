"""GridSearchCV over the influence estimator's own hyper-parameters.

``InfluenceScorer.score`` is the wrapped model's (so it stays the classifier
it wraps); ``damping`` and ``curvature`` are ranked by
``scoring=make_loo_scorer(...)``, agreement with actual retraining.
"""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceScorer
from skinfluence.evaluation import make_loo_scorer

# worst first: a search that ties every candidate keeps this one
DAMPINGS = [1e3, 10.0, 1e-2, 1e-6]


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X)[:200], y[:200]


def _scorer():
    lr = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)
    return InfluenceScorer(lr, curvature="exact")


def test_default_scoring_ties_every_damping(cancer):
    # why the documented scorer is needed: the model's score ignores damping
    X, y = cancer
    search = GridSearchCV(_scorer(), {"damping": DAMPINGS}, cv=2).fit(X, y)
    assert np.ptp(search.cv_results_["mean_test_score"]) == 0
    assert search.best_params_ == {"damping": DAMPINGS[0]}


def test_loo_scorer_picks_a_small_damping(cancer):
    # On a strictly convex fit, damping 1e3 swamps H (eigenvalues <~ 10):
    # the scores become gradient dot products and lose agreement with
    # actual leave-one-out retraining; the scorer ranks it last.
    X, y = cancer
    scoring = make_loo_scorer(10, n_queries=2, random_state=0)
    search = GridSearchCV(_scorer(), {"damping": DAMPINGS}, scoring=scoring, cv=2).fit(
        X, y
    )
    means = search.cv_results_["mean_test_score"]
    assert search.best_params_["damping"] <= 1e-2, means
    assert means[0] < means.max() - 0.1, means
    # the refitted best estimator is still the classifier it wraps
    assert search.best_estimator_.score(
        X, y
    ) == search.best_estimator_.estimator_.score(X, y)
