"""Parallel retraining loops (``n_jobs``, joblib, Dask) equal the sequential ones.

The ground truth is the sequential run of the same function (``n_jobs=1``, in
this process), itself tested against closed forms and refits elsewhere.  The
comparisons are exact: every refit is a deterministic function of its inputs
and its seed, the results are gathered in order, and the workers run BLAS and
torch single-threaded like the test process (``OMP_NUM_THREADS=1``, joblib's
and dask's per-worker thread limits), so not even the rounding of a reduction
differs.
"""

import os
import pickle
import warnings

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_array_equal
from sklearn.linear_model import HuberRegressor, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_validate

from skinfluence import InfluenceScorer
from skinfluence.evaluation import (
    lds_ground_truth,
    loo_change,
    make_loo_scorer,
    pbrf_change,
    proximal_change,
    response_changes,
)
from skinfluence.evaluation._parallel import resolve_n_jobs

# -- fitted scorers -------------------------------------------------------------


def _logistic(breast_cancer):
    Xtr, Xte, ytr, yte = breast_cancer
    est = LogisticRegression(C=0.5, tol=1e-10, max_iter=2000)
    return InfluenceScorer(est).fit(Xtr[:80], ytr[:80]), Xte[:4], yte[:4]


def _ridge(diabetes):
    Xtr, Xte, ytr, yte = diabetes
    return InfluenceScorer(Ridge(alpha=1.0)).fit(Xtr[:80], ytr[:80]), Xte[:4], yte[:4]


def _torch(wine):
    torch = pytest.importorskip("torch")
    from skinfluence.models import TorchClassifier

    Xtr, Xte, ytr, yte = wine
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)
    )
    # a few epochs of Adam on minibatches: far from an optimum, seeded
    clf = TorchClassifier(
        mlp,
        optimizer="adam",
        lr=1e-2,
        max_iter=5,
        batch_size=16,
        weight_decay=1e-2,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not at an optimum, by design
        scorer = InfluenceScorer(clf, curvature="ggn", damping=1e-2).fit(
            Xtr[:50, :5], ytr[:50]
        )
    return scorer, Xte[:4, :5], yte[:4]


CASES = {"logistic": _logistic, "ridge": _ridge, "torch": _torch}
DATA = {"logistic": "breast_cancer", "ridge": "diabetes", "torch": "wine"}


@pytest.fixture(params=list(CASES))
def case(request):
    return CASES[request.param](request.getfixturevalue(DATA[request.param]))


IDX = [0, 3, 7, 11, 19, 40]


# -- n_jobs=2 (loky processes) equals n_jobs=1 ----------------------------------


def test_loo_change_parallel_equals_sequential(case):
    scorer, Xq, yq = case
    seq = loo_change(scorer, Xq, yq, IDX, n_jobs=1)
    assert np.abs(seq).max() > 0  # the refits moved something
    assert_array_equal(loo_change(scorer, Xq, yq, IDX, n_jobs=2), seq)


@pytest.mark.parametrize("fn", [pbrf_change, proximal_change])
def test_response_changes_parallel_equal_sequential(case, fn):
    scorer, Xq, yq = case
    kw = {"damping": 1e-2, "return_info": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PBRF curvature notes on the torch net
        seq, seq_info = fn(scorer, Xq, yq, IDX[:4], n_jobs=1, **kw)
        par, par_info = fn(scorer, Xq, yq, IDX[:4], n_jobs=2, **kw)
    assert np.abs(seq).max() > 0
    assert_array_equal(par, seq)
    for key in seq_info:
        assert_array_equal(par_info[key], seq_info[key])


def test_lds_ground_truth_parallel_equals_sequential(case):
    scorer, Xq, yq = case
    kw = {"n_subsets": 6, "n_seeds": 2, "random_state": 0}
    seq = lds_ground_truth(scorer, Xq, yq, **kw, n_jobs=1)
    par = lds_ground_truth(scorer, Xq, yq, **kw, n_jobs=2)
    assert np.ptp(seq.losses, axis=1).max() > 0  # subsets differ
    assert_array_equal(par.masks, seq.masks)
    assert_array_equal(par.seeds, seq.seeds)
    assert_array_equal(par.seed_losses, seq.seed_losses)


def test_huber_loo_parallel_equals_sequential(diabetes):
    Xtr, Xte, ytr, yte = diabetes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = InfluenceScorer(HuberRegressor(max_iter=1000)).fit(Xtr[:80], ytr[:80])
    seq = loo_change(scorer, Xte[:3], yte[:3], IDX, n_jobs=1)
    assert_array_equal(loo_change(scorer, Xte[:3], yte[:3], IDX, n_jobs=2), seq)


def test_lds_redraws_do_not_depend_on_n_jobs(breast_cancer):
    # subsets that drop class 1 fail and are redrawn: the redraws come after
    # each round in subset order, so the workers' finishing order is moot
    Xtr, Xte, ytr, yte = breast_cancer
    X, y = Xtr[:40], np.zeros(40, dtype=int)
    y[[5, 30]] = 1
    scorer = InfluenceScorer(LogisticRegression(C=0.1)).fit(X, y)
    kw = {"n_subsets": 8, "random_state": 0}
    seq = lds_ground_truth(scorer, Xte[:3], yte[:3], **kw, n_jobs=1)
    par = lds_ground_truth(scorer, Xte[:3], yte[:3], **kw, n_jobs=2)
    assert seq.n_redraws > 0
    assert par.n_redraws == seq.n_redraws
    assert_array_equal(par.masks, seq.masks)
    assert_array_equal(par.losses, seq.losses)


def test_refits_that_use_the_global_generators_are_seeded_per_row(breast_cancer):
    # A skorch net whose warm refit shuffles its batches with torch's global
    # generator: without a seed per refit, a worker (fresh generator) and this
    # process would shuffle differently.  The caller's generators are left
    # as they were.
    torch = pytest.importorskip("torch")
    skorch = pytest.importorskip("skorch")
    Xtr, Xte, ytr, yte = breast_cancer
    f32 = np.float32
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(
        torch.nn.Sequential(
            torch.nn.Linear(30, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
        ),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        lr=0.1,
        max_epochs=2,
        batch_size=8,
        iterator_train__shuffle=True,
        train_split=None,
        verbose=0,
    ).fit(Xtr[:60].astype(f32), ytr[:60])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = InfluenceScorer(net, curvature="identity").fit(
            Xtr[:60].astype(f32), ytr[:60]
        )
    Xq, yq = Xte[:3].astype(f32), yte[:3]
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()  # noqa: NPY002 (the global one refits use)
    seq = loo_change(scorer, Xq, yq, IDX[:4], n_jobs=1)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()  # noqa: NPY002
    assert_array_equal(loo_change(scorer, Xq, yq, IDX[:4], n_jobs=1), seq)
    assert_array_equal(loo_change(scorer, Xq, yq, IDX[:4], n_jobs=2), seq)


# -- make_loo_scorer inside model selection -----------------------------------


def test_make_loo_scorer_parallel_gives_the_same_scores(diabetes):
    Xtr, _, ytr, _ = diabetes
    X, y = Xtr[:120], ytr[:120]

    def scores(n_jobs):
        scoring = make_loo_scorer(8, n_queries=2, random_state=0, n_jobs=n_jobs)
        cv = cross_validate(InfluenceScorer(Ridge()), X, y, cv=3, scoring=scoring)
        grid = GridSearchCV(
            InfluenceScorer(Ridge()),
            {"estimator__alpha": [0.1, 10.0]},
            cv=2,
            scoring=scoring,
        ).fit(X, y)
        return cv["test_score"], grid.cv_results_["mean_test_score"]

    (cv1, grid1), (cv2, grid2) = scores(1), scores(2)
    assert np.isfinite(cv1).all() and np.ptp(grid1) > 0
    assert_array_equal(cv2, cv1)
    assert_array_equal(grid2, grid1)


# -- where the work runs, n_jobs resolution, warnings, validation -----------------


class _Pid:
    """An adapter-like stub whose 'loss' is the id of the process measuring it."""

    def loss(self, X, y):
        return np.full(len(X), float(os.getpid()))


class _PidModels:
    def __call__(self, i):
        if i is not None and i % 2:
            warnings.warn(f"refit {i} warns", UserWarning, stacklevel=1)
        return _Pid()


def _pids(scorer, Xq, yq, **kw):
    """The processes that measured the refits; checks that every refit's
    warning reached this process (relayed from workers)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        delta = response_changes(scorer, Xq, yq, IDX, _PidModels(), **kw)
    messages = sorted(str(w.message) for w in caught)
    assert messages == sorted(f"refit {i} warns" for i in IDX if i % 2)
    return set((delta[0] + os.getpid()).tolist())


def test_n_jobs_resolution_and_where_refits_run(diabetes):
    scorer, Xq, yq = _ridge(diabetes)
    here = {float(os.getpid())}
    assert _pids(scorer, Xq, yq, n_jobs=2).isdisjoint(here)
    assert _pids(scorer, Xq, yq) == here  # joblib's default: sequential
    with parallel_config(n_jobs=2):  # a surrounding config applies
        assert _pids(scorer, Xq, yq).isdisjoint(here)
    scorer.n_jobs = 2  # the scorer's own n_jobs is the default ...
    assert resolve_n_jobs(None, scorer) == 2
    assert _pids(scorer, Xq, yq).isdisjoint(here)
    assert _pids(scorer, Xq, yq, n_jobs=1) == here  # ... an explicit one wins
    scorer.n_jobs = 0
    with pytest.raises(ValueError, match="scorer.n_jobs=0"):
        loo_change(scorer, Xq, yq, IDX)


def test_invalid_n_jobs_is_refused(diabetes):
    scorer, Xq, yq = _ridge(diabetes)
    with pytest.raises(ValueError, match="n_jobs=0 runs nothing"):
        loo_change(scorer, Xq, yq, IDX, n_jobs=0)
    with pytest.raises(TypeError, match="n_jobs must be an int or None"):
        proximal_change(scorer, Xq, yq, IDX, n_jobs=2.0)
    with pytest.raises(ValueError, match="n_jobs=0 runs nothing"):
        lds_ground_truth(scorer, Xq, yq, n_subsets=2, n_jobs=0)
    with pytest.raises(ValueError, match="n_jobs"):
        make_loo_scorer(n_jobs="two")


# -- the same calls on a dask.distributed cluster ---------------------------------


@pytest.fixture(scope="module")
def dask_client():
    # one cluster for the module (start-up and shutdown take seconds); torch
    # adapters travel to dask workers as to loky's workers, by cloudpickle
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit="1GiB",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_backend_equals_in_memory(dask_client, breast_cancer):
    scorer, Xq, yq = _logistic(breast_cancer)
    loo = loo_change(scorer, Xq, yq, IDX, n_jobs=1)
    truth = lds_ground_truth(scorer, Xq, yq, n_subsets=6, random_state=0, n_jobs=1)
    with parallel_config(backend="dask"):
        pids = _pids(scorer, Xq, yq)
        dask_loo = loo_change(scorer, Xq, yq, IDX)
        dask_truth = lds_ground_truth(scorer, Xq, yq, n_subsets=6, random_state=0)
    workers = dask_client.run(os.getpid)
    assert pids <= {float(p) for p in workers.values()}  # ran on the cluster
    assert_array_equal(dask_loo, loo)
    assert_array_equal(dask_truth.masks, truth.masks)
    assert_array_equal(dask_truth.losses, truth.losses)


# -- what travels to the workers -------------------------------------------------


def _skorch(breast_cancer):
    torch = pytest.importorskip("torch")
    skorch = pytest.importorskip("skorch")
    Xtr, Xte, ytr, yte = breast_cancer
    f32 = np.float32
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(
        torch.nn.Sequential(
            torch.nn.Linear(30, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)
        ),
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=2,
        train_split=None,
        verbose=0,
    ).fit(Xtr[:40].astype(f32), ytr[:40])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = InfluenceScorer(net, curvature="identity").fit(
            Xtr[:40].astype(f32), ytr[:40]
        )
    return scorer, Xte[:3].astype(f32), yte[:3]


def _huber(diabetes):
    Xtr, Xte, ytr, yte = diabetes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = InfluenceScorer(HuberRegressor(max_iter=1000)).fit(Xtr[:40], ytr[:40])
    return scorer, Xte[:3], yte[:3]


@pytest.mark.parametrize(
    "make, data",
    [
        (_logistic, "breast_cancer"),
        (_ridge, "diabetes"),
        (_huber, "diabetes"),
        (_torch, "wine"),
        (_skorch, "breast_cancer"),
    ],
)
def test_adapters_pickle_with_their_retrain_hook(request, make, data):
    # plain pickle (hence also cloudpickle, which loky and dask use): the
    # copy retrains to the same model as the original
    scorer, Xq, yq = make(request.getfixturevalue(data))
    adapter = scorer.adapter_
    copy = pickle.loads(pickle.dumps(adapter))
    keep = np.ones(adapter.n_train, dtype=bool)
    keep[[1, 2]] = False
    assert_array_equal(copy.loss(Xq, yq), adapter.loss(Xq, yq))
    assert_array_equal(
        copy.retrain(keep, warm_start=True).loss(Xq, yq),
        adapter.retrain(keep, warm_start=True).loss(Xq, yq),
    )


def test_progress_bar_counts_parallel_refits(diabetes, monkeypatch):
    from skinfluence.evaluation import _parallel

    bars = []

    class Recorder:
        def __init__(self, *, total, desc, disable, leave):
            self.total, self.desc, self.disable, self.steps = total, desc, disable, []
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.steps.append(n)

    monkeypatch.setattr(_parallel, "tqdm", Recorder)
    scorer, Xq, yq = _ridge(diabetes)
    loo_change(scorer, Xq, yq, IDX, n_jobs=2, verbose=1)
    (bar,) = bars
    assert (bar.desc, bar.total, bar.disable) == ("LOO refits", len(IDX), False)
    assert sum(bar.steps) == len(IDX) and len(bar.steps) > 1  # ticks per task
    lds_ground_truth(scorer, Xq, yq, n_subsets=5, random_state=0, n_jobs=2)
    assert (bars[1].desc, bars[1].total, bars[1].disable) == ("LDS retrains", 5, True)
    assert sum(bars[1].steps) == 5


def test_threading_backend_keeps_the_callers_global_generator():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    X, y = load_breast_cancer(return_X_y=True)
    X = X[:150, :5] / X[:150, :5].std(axis=0)
    y = y[:150]
    scorer = InfluenceScorer(LogisticRegression(tol=1e-10)).fit(X, y)
    sequential = loo_change(scorer, X[:2], y[:2], range(20), n_jobs=1)
    for _ in range(3):
        np.random.seed(123)  # noqa: NPY002
        before = np.random.get_state()[1].copy()  # noqa: NPY002
        with parallel_config(backend="threading", n_jobs=2):
            threaded = loo_change(scorer, X[:2], y[:2], range(20))
        after = np.random.get_state()[1]  # noqa: NPY002
        assert_array_equal(before, after)
        assert_array_equal(threaded, sequential)
