"""Shared fixtures: single-threaded BLAS (2 cores, 2 xdist workers), data."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_thread_blas():
    # Small refits run ~10x faster on one thread when the other core is busy.
    with threadpool_limits(limits=1):
        yield


def _split(X, y, *, stratify=True, test_size=0.2):
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, test_size=test_size, random_state=0, stratify=y if stratify else None
    )
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


@pytest.fixture(scope="session")
def breast_cancer():
    return _split(*load_breast_cancer(return_X_y=True))


@pytest.fixture(scope="session")
def digits():
    return _split(*load_digits(return_X_y=True))


@pytest.fixture(scope="session")
def wine():
    return _split(*load_wine(return_X_y=True))


@pytest.fixture(scope="session")
def diabetes():
    return _split(*load_diabetes(return_X_y=True), stratify=False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
