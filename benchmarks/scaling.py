"""Scaling study: influence at size against a numpy floor, pyDVL and cleanlab.

Cases (generated, nothing downloads)
------------------------------------
* ``bin-n{n}-d{d}`` / ``mc10-n{n}-d{d}``: binary and 10-class logistic
  regression, ``n`` in {2,000; 20,000; 100,000} x ``d`` in {50; 500}, standard
  normal features, labels drawn from a random linear softmax model,
  ``LogisticRegression(C=1)`` (lambda = 1/n on the mean loss), 100 held-out
  query rows.
* ``text-n20000-f50000``: a sparse text-like set, 50,000 features, CSR, 50-100
  word draws per row from a Zipf-like vocabulary, tf-idf weighted and
  l2-normalised (sklearn's ``TfidfTransformer``), binary labels from a random
  linear model.
* ``detect-n100000``: 10-class, d = 50, 10% of the labels flipped
  (``skinfluence.datasets.inject_label_noise``).

Methods
-------
* ``floor``: the plain numpy/scipy floor.  Fit: build
  ``H = X~^T A X~ / n + penalty`` in closed form (``dsyrk`` over row blocks;
  10 classes: the class-sum direction of the unpenalised intercepts, a null
  vector orthogonal to every gradient, is lifted to eigenvalue lambda so the
  scores are the pseudo-inverse ones) and ``scipy.linalg.cho_factor``.
  Self-influence: squared column norms of one triangular solve of all training
  gradients (row blocks).  Influence of 100 queries: one ``cho_solve`` and one
  GEMM with the training features (the gradients ``r_i (x) x~_i`` are never
  formed).
* ``exact`` / ``cg`` / ``auto``: ``InfluenceScorer(FrozenEstimator(model),
  curvature=c)``; ``fit``, ``influence(X_q, y_q)`` and ``self_influence_``
  timed separately, each on a fresh fit.
* ``pydvl-direct`` / ``pydvl-cg``: pyDVL 0.10 ``DirectInfluence`` /
  ``CgInfluence`` through ``benchmarks/_pydvl_ref.py`` (fit + 100 queries in one
  call; pyDVL has no self-influence).
* detection: ``lr-fit`` (one ``LogisticRegression`` fit, and the in-sample
  loss as a score), ``detector`` (``NoisyLabelDetector``, default method),
  ``cleanlab`` (5-fold out-of-fold ``cross_val_predict`` probabilities,
  ``cleanlab.rank.get_label_quality_scores`` and
  ``cleanlab.filter.find_label_issues``); ROC AUC of each score for the flips.

Measurement
-----------
Every method of every case runs in its own child process (this script with
``--worker-method``), single-threaded (``OMP/OPENBLAS/MKL_NUM_THREADS=1``,
torch 1 thread), under a wall-clock limit (``--limit``; the floor, the
reference every ratio needs, gets five times as long; the text case gets its
300 s goal outside ``--quick``) and an address-space cap
(``--mem-cap-gb``, so a dense 50,000-parameter Hessian fails instead of
swapping).  Seconds: the best of up to ``--repeats`` runs (fewer when one run
is slow).  Peak memory: the child's ``ru_maxrss`` minus its resident set after
imports and data loading.  Ratios are against the floor measured *in the same
child* after the method (the reference for detection: one
``LogisticRegression`` fit); where the floor is too slow to repeat in every
child (its total times ``--repeats`` above ``--ref-max`` seconds), the floor
child's own figure is used and the ratio is marked ``*``.  Ratios are end to end:
``(fit + influence) / (floor fit + floor influence)`` and likewise for
self-influence.  A row-wise self-influence (one solve per training row) that
would exceed the limit is extrapolated from ``parameter_change`` on a few rows
(one solve each) times ``n / rows`` and labelled ``~`` (extrapolated).
``err`` columns: relative Frobenius difference from the floor's scores.  A
cell whose smaller-n sibling (same classes and d) hit the limit, or whose
time scaled linearly in n would, is skipped and says so.  Goals are printed
next to each ratio (PASS/MISS): exact and auto within 3x the floor, cg within
20x, the detector within 3x one fit, the text case end to end within 300 s
and 3 GB.

Run: ``python benchmarks/scaling.py`` (full study: well over 20 minutes on
a busy 2-core machine, the 10-class d = 500 cases at n >= 20,000 most of it;
``--cases``/``--methods`` to pick cells), ``--quick`` (small sizes, no pyDVL
CG, 10 s limit: a few minutes), ``--cases mc10-n20000`` (names or
substrings), ``--methods exact,cg``, ``--out build/scaling.md`` (markdown
table; JSON next to it, written after every case), ``--render a.json,b.json``
(re-render the table from earlier runs' JSON).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import sparse  # noqa: E402

HERE = Path(__file__).resolve().parent
if not os.environ.get("PYTHONPATH"):
    # measure this checkout's skinfluence (also in the children), not whatever
    # an editable install elsewhere points at; PYTHONPATH overrides
    sys.path.insert(1, str(HERE.parent))
N_QUERIES = 100
GOAL_EXACT = 3.0  # influence / self-influence vs the floor, dense cases
GOAL_CG = 20.0  # CG-class paths vs the floor
GOAL_DETECT = 3.0  # NoisyLabelDetector vs one model fit
GOAL_TEXT_S = 300.0  # sparse text end to end: "minutes"
GOAL_TEXT_MB = 3 * 1024.0  # ... under 3 GB
BLOCK_BYTES = 256 * 2**20  # row blocks of the floor
FLOOR_LIMIT_FACTOR = 5  # the floor's time limit, in per-method limits


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "dense", "text" or "detect"
    n: int
    d: int
    classes: int


def dense_case(k, n, d):
    prefix = "bin" if k == 2 else f"mc{k}"
    return Case(f"{prefix}-n{n}-d{d}", "dense", n, d, k)


def all_cases(quick):
    if quick:
        return [
            dense_case(2, 2000, 50),
            dense_case(10, 2000, 50),
            dense_case(2, 2000, 500),
            Case("text-n2000-f5000", "text", 2000, 5000, 2),
            Case("detect-n5000", "detect", 5000, 20, 10),
        ]

    # smallest n first (a cell whose smaller sibling hit the limit is skipped),
    # the text and detection goals before the slowest dense cases
    def dense(n):
        return [dense_case(k, n, d) for k in (2, 10) for d in (50, 500)]

    return [
        *dense(2000),
        *dense(20000),
        Case("text-n20000-f50000", "text", 20000, 50000, 2),
        Case("detect-n100000", "detect", 100000, 50, 10),
        *dense(100000),
    ]


def methods_for(case, with_pydvl, quick=False):
    if case.kind == "dense":
        extra = ["pydvl-direct", "pydvl-cg"] if with_pydvl else []
        if quick:  # pyDVL's CG needs over 30 s even at n = 2,000
            extra = extra[:1]
        return ["floor", "exact", "auto", "cg", *extra]
    if case.kind == "text":
        return ["auto", "cg", "exact"]
    return ["lr-fit", "detector", "cleanlab"]


# --------------------------------------------------------------------------
# data


def _model(case):
    from sklearn.linear_model import LogisticRegression

    if case.kind == "detect":
        return LogisticRegression(max_iter=1000)
    return LogisticRegression(C=1.0, tol=1e-8, max_iter=5000)


def _softmax_labels(rng, logits):
    if logits.shape[1] == 1:
        return (rng.random(len(logits)) < 1 / (1 + np.exp(-logits[:, 0]))).astype(int)
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)


def generate(case, seed=0):
    """``(X, y, X_query, y_query)``; detection: ``(X, y_noisy, is_noisy, y)``."""
    rng = np.random.default_rng(seed)
    m = case.n + N_QUERIES
    if case.kind == "text":
        from sklearn.feature_extraction.text import TfidfTransformer

        f = case.d
        prob = 1.0 / (np.arange(f) + 10.0)
        prob /= prob.sum()
        per_row = rng.integers(50, 101, size=m)
        cols = rng.choice(f, size=per_row.sum(), p=prob)
        rows = np.repeat(np.arange(m), per_row)
        counts = sparse.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(m, f))
        counts.sum_duplicates()
        X = TfidfTransformer().fit_transform(counts).tocsr()
        y = _softmax_labels(rng, (X @ (2.0 * rng.standard_normal(f)))[:, None])
        return X[: case.n], y[: case.n], X[case.n :], y[case.n :]
    k = 1 if case.classes == 2 else case.classes
    X = rng.standard_normal((m, case.d))
    scale = 3.0 if case.kind == "detect" else 2.0
    W = rng.standard_normal((case.d, k)) * scale / np.sqrt(case.d)
    y = _softmax_labels(rng, X @ W + 0.1 * rng.standard_normal(k))
    if case.kind == "detect":
        from skinfluence.datasets import inject_label_noise

        y_noisy, is_noisy = inject_label_noise(y[: case.n], 0.1, random_state=0)
        return X[: case.n], np.asarray(y_noisy), np.asarray(is_noisy), y[: case.n]
    return X[: case.n], y[: case.n], X[case.n :], y[case.n :]


def prepare(case, cache):
    """Generate the data and fit the model once; children load them."""
    folder = cache / case.name
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    a, b, c, e = generate(case)
    with open(folder / "data.pkl", "wb") as fh:
        pickle.dump((a, b, c, e), fh, protocol=pickle.HIGHEST_PROTOCOL)
    if case.kind != "detect":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = _model(case).fit(a, b)
        with open(folder / "model.pkl", "wb") as fh:
            pickle.dump(model, fh)
    (folder / "done").touch()
    return folder


# --------------------------------------------------------------------------
# the numpy floor


def _tilde(X):
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _residuals(model, Xt, y):
    """Per-row loss derivative w.r.t. the logits: (n, K) (K = 1 binary)."""
    theta = np.hstack([model.coef_, model.intercept_[:, None]])  # (K, d+1)
    Z = Xt @ theta.T
    if theta.shape[0] == 1:
        s = 1 / (1 + np.exp(-Z))
        return s, s - (y == model.classes_[1])[:, None]
    Z -= Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=1, keepdims=True)
    R = P.copy()
    R[np.arange(len(y)), np.searchsorted(model.classes_, y)] -= 1
    return P, R


def _rows(n, width):
    step = max(1, BLOCK_BYTES // (8 * max(width, 1)))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def floor_fit(model, X, y):
    from scipy.linalg import cho_factor
    from scipy.linalg.blas import dsyrk

    n, d = X.shape
    Xt = _tilde(X)
    P, _ = _residuals(model, Xt, y)
    k = P.shape[1]
    q = d + 1
    p = k * q
    lam = 1.0 / (model.C * n)
    H = np.zeros((p, p), order="F")
    if k == 1:
        a = P[:, 0] * (1 - P[:, 0])
        for t in _rows(n, q):
            Y = Xt[t] * np.sqrt(a[t])[:, None]
            H = dsyrk(1.0 / n, Y.T, beta=1.0, c=H, overwrite_c=1)
    else:
        for t in _rows(n, p):
            Z = (P[t, :, None] * Xt[t, None, :]).reshape(-1, p)
            H = dsyrk(-1.0 / n, Z.T, beta=1.0, c=H, overwrite_c=1)
        for j in range(k):
            B = np.zeros((q, q), order="F")
            for t in _rows(n, q):
                Y = Xt[t] * np.sqrt(P[t, j])[:, None]
                B = dsyrk(1.0 / n, Y.T, beta=1.0, c=B, overwrite_c=1)
            H[j * q : (j + 1) * q, j * q : (j + 1) * q] += B
        # class-sum direction of the intercepts: null, orthogonal to gradients
        v = np.zeros(p)
        v[q - 1 :: q] = 1.0
        H += (lam / k) * np.outer(v, v)
    idx = np.arange(p)
    pen = idx[(idx % q) != q - 1]
    H[pen, pen] += lam
    return cho_factor(H, lower=False, overwrite_a=True, check_finite=False)


def _grads(R, Xt):
    return (R[:, :, None] * Xt[:, None, :]).reshape(len(R), -1)


def floor_self(model, X, y, factor):
    from scipy.linalg import solve_triangular

    U = factor[0]
    Xt = _tilde(X)
    _, R = _residuals(model, Xt, y)
    out = np.empty(len(y))
    for t in _rows(len(y), U.shape[0]):
        V = solve_triangular(U, _grads(R[t], Xt[t]).T, trans="T", check_finite=False)
        out[t] = np.einsum("ij,ij->j", V, V)
    return out


def floor_influence(model, X, y, Xq, yq, factor):
    from scipy.linalg import cho_solve

    Xt, Xqt = _tilde(X), _tilde(Xq)
    _, R = _residuals(model, Xt, y)
    _, Rq = _residuals(model, Xqt, yq)
    k, q, m = R.shape[1], Xt.shape[1], len(yq)
    V = cho_solve(factor, _grads(Rq, Xqt).T, check_finite=False)  # (p, m)
    V = V.reshape(k, q, m).transpose(1, 0, 2).reshape(q, k * m)
    S = np.empty((m, len(y)))
    for t in _rows(len(y), k * m):
        T = (Xt[t] @ V).reshape(-1, k, m)
        S[:, t] = np.einsum("ik,ikm->mi", R[t], T)
    return S


# --------------------------------------------------------------------------
# the worker (one child process per case and method)


def _rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Recorder:
    """Write each finding to a JSON-lines file as soon as it is known."""

    def __init__(self, path):
        self.path = path

    def __call__(self, **record):
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")


def _rel_err(A, B):
    if A is None or B is None:
        return None
    A, B = np.asarray(A, float), np.asarray(B, float)
    if A.shape != B.shape:
        return None
    return float(np.linalg.norm(A - B) / max(np.linalg.norm(B), 1e-300))


SKIP = object()  # a stage's "not run this time" (nothing is recorded)
_BASELINE = {"mb": 0.0}  # the child's resident set after imports and data


def _repeat(stages, limit, repeats, emit, prefix=""):
    """Run ``stages`` (a list of (name, fn(state))) up to ``repeats`` times.

    Each repeat runs the stages in order on a fresh state; the best seconds of
    each stage are emitted after every stage, so a killed child leaves them.
    Stages named ``_...`` run untimed (set-up, probes, scoring).  Repeats stop
    when another one would push the time past half the limit.
    """
    best, start, out, shown = {}, time.perf_counter(), {}, {}
    for r in range(repeats):
        t_rep = time.perf_counter()
        state = {}
        for name, fn in stages:
            t0 = time.perf_counter()
            value = fn(state)
            sec = time.perf_counter() - t0
            if r == 0 and not prefix:
                for key, val in state.get("meta", {}).items():
                    if shown.get(key, SKIP) != val:
                        shown[key] = val
                        emit(event="meta", **{key: val})
            if value is SKIP or name.startswith("_"):
                continue
            if value is not None and r == 0:
                out[name] = value
            if name not in best or sec < best[name]:
                best[name] = sec
                emit(event="time", stage=prefix + name, seconds=sec, repeat=r + 1)
            if not prefix:  # peak so far: kept if the limit stops the child
                emit(event="peak", mb=_peak_mb() - _BASELINE["mb"])
        used = time.perf_counter() - start
        if used + (time.perf_counter() - t_rep) > limit / 2:
            break
    return out


def _new_api():
    from skinfluence import InfluenceScorer

    return "memory_budget" in InfluenceScorer().get_params()


def _scorer_stages(curvature, model, X, y, Xq, yq, limit, emit):
    from sklearn.frozen import FrozenEstimator

    from skinfluence import InfluenceScorer

    n = X.shape[0]
    decided = {}

    def fit(state):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state["sc"] = InfluenceScorer(
                FrozenEstimator(model), curvature=curvature, random_state=0
            ).fit(X, y)
        sc = state["sc"]
        state["meta"] = {
            "curvature": type(sc.curvature_).__name__,
            "n_params": int(np.asarray(sc.adapter_.params()).size),
        }

    def influence(state):
        return state["sc"].influence(Xq, yq)

    def probe(state):
        if "extrapolated" not in decided:
            decided["extrapolated"] = _maybe_extrapolate(state["sc"], n, limit, emit)

    def self_influence(state):
        sc = state["sc"]
        if decided["extrapolated"]:
            return SKIP
        value = sc.self_influence_
        for attr in ("self_influence_method_", "self_influence_error_"):
            if getattr(sc, attr, None) is not None:
                state.setdefault("meta", {})[attr] = getattr(sc, attr)
        return value

    return [
        ("fit", fit),
        ("influence", influence),
        ("_probe", probe),
        ("self", self_influence),
    ]


def _maybe_extrapolate(sc, n, limit, emit):
    """Time one-solve-per-row ``parameter_change`` on a few rows.

    Today's ``self_influence_`` solves once per training row on every
    curvature, so when ``rows x n / m`` is above the limit its full run is
    skipped and the extrapolation reported.  With the newer API (a
    ``memory_budget`` parameter: self-influence plans) the full run is always
    attempted; the extrapolation stays on record in case the limit kills it.
    """
    if "Exact" in type(sc.curvature_).__name__:
        return False
    m, sec = 1, 0.0
    while True:
        t0 = time.perf_counter()
        sc.parameter_change(np.arange(m))
        sec = time.perf_counter() - t0
        if sec > 2.0 or m >= 64 or 2 * m > n:
            break
        m *= 2
    estimate = sec * n / m
    emit(event="extrapolation", stage="self", seconds=estimate, rows=m)
    return estimate > limit and not _new_api()


def _floor_stages(model, X, y, Xq, yq):
    def fit(state):
        state["factor"] = floor_fit(model, X, y)
        state["meta"] = {"n_params": int(state["factor"][0].shape[0])}

    def influence(state):
        return floor_influence(model, X, y, Xq, yq, state["factor"])

    def self_influence(state):
        return floor_self(model, X, y, state["factor"])

    return [("fit", fit), ("influence", influence), ("self", self_influence)]


def _pydvl_stages(method, model, X, y, Xq, yq):
    sys.path.insert(0, str(HERE))
    from _pydvl_ref import pydvl_removal_scores

    def run(state):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydvl_removal_scores(
                method,
                X,
                np.searchsorted(model.classes_, y),
                Xq,
                np.searchsorted(model.classes_, yq),
                model.coef_,
                model.intercept_,
                l2=1.0 / (model.C * X.shape[0]),
                classes=model.classes_,
            )

    return [("fit+influence", run)]


def _detect_stages(method, case, X, y_noisy, is_noisy, emit):
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score

    model = _model(case)

    def lr_fit(state):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state["clf"] = clone(model).fit(X, y_noisy)

    def in_sample_loss(state):
        proba = state["clf"].predict_proba(X)
        loss = -np.log(proba[np.arange(len(y_noisy)), y_noisy] + 1e-300)
        state["meta"] = {"auc_in_sample_loss": roc_auc_score(is_noisy, loss)}

    def detector(state):
        from skinfluence import NoisyLabelDetector

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = NoisyLabelDetector(clone(model)).fit(X, y_noisy)
        meta = {"auc_detector": roc_auc_score(is_noisy, det.scores_)}
        for attr in ("curvature_", "method_", "self_influence_method_"):
            value = getattr(det, attr, None)
            if value is not None:
                meta[attr.rstrip("_")] = str(value)
        state["meta"] = meta

    def cleanlab(state):
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
        from sklearn.model_selection import cross_val_predict

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proba = cross_val_predict(
                clone(model), X, y_noisy, cv=5, method="predict_proba"
            )
            quality = get_label_quality_scores(y_noisy, proba)
            flags = find_label_issues(y_noisy, proba)
        state["meta"] = {
            "auc_cleanlab_quality": roc_auc_score(is_noisy, -quality),
            "auc_cleanlab_flags": roc_auc_score(is_noisy, flags.astype(float)),
        }

    return {
        "lr-fit": [("fit", lr_fit), ("_loss", in_sample_loss)],
        "detector": [("fit", detector)],
    }.get(method, [("fit", cleanlab)])


def _warm_up(method):
    """Imports and first BLAS/LAPACK/torch calls before the memory baseline, so
    that their one-off buffers are not counted as the method's memory."""
    import torch
    from scipy.linalg import cho_factor, cho_solve, solve_triangular
    from sklearn.frozen import FrozenEstimator  # noqa: F401
    from sklearn.model_selection import cross_val_predict  # noqa: F401

    A = np.eye(64) * 2.0
    c = cho_factor(A @ A)
    cho_solve(c, solve_triangular(c[0], A))
    torch.ones(8, 8, dtype=torch.float64) @ torch.ones(8, dtype=torch.float64)
    if method.startswith("pydvl-"):
        sys.path.insert(0, str(HERE))
        from _pydvl_ref import _import_pydvl

        _import_pydvl()
    if method == "cleanlab":
        import cleanlab.filter  # noqa: F401
        import cleanlab.rank  # noqa: F401


def worker(args):
    if args.mem_cap_gb > 0:
        cap = int(args.mem_cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch
    from threadpoolctl import threadpool_limits

    import skinfluence  # noqa: F401  (imports before the baseline)

    torch.set_num_threads(1)
    threadpool_limits(limits=1)
    warnings.simplefilter("ignore")
    case = Case(**json.loads(args.case_json))
    emit = Recorder(args.jsonl)
    folder = Path(args.cache) / case.name
    with open(folder / "data.pkl", "rb") as fh:
        data = pickle.load(fh)
    model = None
    if (folder / "model.pkl").exists():
        with open(folder / "model.pkl", "rb") as fh:
            model = pickle.load(fh)
    method = args.worker_method
    _warm_up(method)
    base = _BASELINE["mb"] = _rss_mb()
    emit(event="start", baseline_mb=base)
    try:
        if case.kind == "detect":
            X, y_noisy, is_noisy, _ = data
            stages = _detect_stages(method, case, X, y_noisy, is_noisy, emit)
            _repeat(stages, args.limit, args.repeats, emit)
            emit(event="peak", mb=_peak_mb() - base)
            if method != "lr-fit":
                ref = _detect_stages("lr-fit", case, X, y_noisy, is_noisy, emit)
                _repeat(ref, args.limit, 1, emit, prefix="ref:")
            return
        X, y, Xq, yq = data
        if method == "floor":
            stages = _floor_stages(model, X, y, Xq, yq)
        elif method.startswith("pydvl-"):
            stages = _pydvl_stages(method[6:], model, X, y, Xq, yq)
        else:
            stages = _scorer_stages(method, model, X, y, Xq, yq, args.limit, emit)
        out = _repeat(stages, args.limit, args.repeats, emit)
        emit(event="peak", mb=_peak_mb() - base)
        if method == "floor":
            np.save(folder / "floor_S.npy", out["influence"])
            np.save(folder / "floor_self.npy", out["self"])
            return
        S = out.get("influence", out.get("fit+influence"))
        errs = {}
        for key, value, ref in (
            ("err_S", S, "floor_S.npy"),
            ("err_self", out.get("self"), "floor_self.npy"),
        ):
            if value is not None and (folder / ref).exists():
                errs[key] = _rel_err(value, np.load(folder / ref))
        if errs:
            emit(event="meta", **errs)
        if args.ref_inproc and case.kind == "dense":
            _repeat(
                _floor_stages(model, X, y, Xq, yq),
                args.limit,
                args.repeats,
                emit,
                prefix="ref:",
            )
    except Exception as exc:  # a refusal or a failure is a result too
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        emit(event="error", message=msg)


# --------------------------------------------------------------------------
# the parent: run the children, gather, print


def run_child(case, method, args, cache, ref_inproc):
    # the floor is the reference every ratio needs: it gets a longer limit
    limit = args.limit * (FLOOR_LIMIT_FACTOR if method == "floor" else 1)
    if case.kind == "text" and not args.quick:  # its goal: end to end in minutes
        limit = max(limit, GOAL_TEXT_S)
    jsonl = cache / case.name / f"{method}.jsonl"
    jsonl.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker-method",
        method,
        "--case-json",
        json.dumps(asdict(case)),
        "--cache",
        str(cache),
        "--jsonl",
        str(jsonl),
        "--limit",
        str(limit),
        "--repeats",
        str(args.repeats),
        "--mem-cap-gb",
        str(args.mem_cap_gb),
    ]
    if ref_inproc:
        cmd.append("--ref-inproc")
    t0 = time.perf_counter()
    timed_out = False
    try:
        # the limit is for the method; imports and loading get a margin
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + 20)
        stderr = proc.stderr
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        timed_out, stderr, rc = True, "", None
    res = {"times": {}, "ref": {}, "meta": {}, "wall": time.perf_counter() - t0}
    if jsonl.exists():
        for line in jsonl.read_text().splitlines():
            rec = json.loads(line)
            event = rec.pop("event")
            if event == "time":
                stage = rec["stage"]
                bucket = "ref" if stage.startswith("ref:") else "times"
                res[bucket][stage.removeprefix("ref:")] = rec["seconds"]
            elif event == "extrapolation":
                res["extrapolated_self"] = rec["seconds"]
                res["extrapolation_rows"] = rec["rows"]
            elif event == "peak":
                res["peak_mb"] = rec["mb"]
            elif event == "error":
                res["error"] = rec["message"]
            elif event in ("meta", "start"):
                res["meta"].update(rec)
    if timed_out:
        res["timed_out"] = True
    elif rc not in (0, None) and "error" not in res:
        tail = (stderr or "").strip().splitlines()
        res["error"] = f"exit {rc}: " + (tail[-1][:160] if tail else "")
    return res


def _fmt_s(x):
    if x is None:
        return "-"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _ratio(num, den, goal, star):
    if num is None or den is None or den <= 0:
        return "-"
    r = num / den
    mark = "PASS" if r <= goal else "MISS"
    return f"{r:.3g}x{star} {mark}(<={goal:g}x)"


def _goal_for(method):
    """The issue's goals: the default and exact paths within 3x the floor on
    every dense case ("auto" included when it picks CG), CG within 20x."""
    if method.startswith("pydvl") or method == "floor":
        return None
    return GOAL_CG if method == "cg" else GOAL_EXACT


def dense_row(case, method, res, floor):
    t, meta = res.get("times", {}), res.get("meta", {})
    ref, star = res.get("ref") or {}, ""
    if method == "floor":
        ref = {}
    elif not ref.get("fit") and floor:
        ref, star = floor.get("times", {}), "*"
    fit, inf, slf = t.get("fit"), t.get("influence"), t.get("self")
    notes = []
    limit_hit = res.get("timed_out")
    self_txt = _fmt_s(slf)
    if slf is None and res.get("extrapolated_self") is not None:
        slf = res["extrapolated_self"]
        self_txt = f"~{_fmt_s(slf)}"
        notes.append(f"self extrapolated from {res['extrapolation_rows']} row solves")
    elif slf is None and limit_hit:
        self_txt = ">limit"
    if "fit+influence" in t:
        inf_txt = _fmt_s(t["fit+influence"]) + " (with fit)"
        fit_plus_inf = t["fit+influence"]
    else:
        inf_txt = _fmt_s(inf) if inf is not None or not limit_hit else ">limit"
        fit_plus_inf = None if fit is None or inf is None else fit + inf
    goal = _goal_for(method)
    r_inf = r_self = "-"
    if ref.get("fit") is not None:
        den_inf = ref["fit"] + ref.get("influence", np.nan)
        den_self = ref["fit"] + ref.get("self", np.nan)
        g = goal if goal is not None else np.inf
        if fit_plus_inf is not None:
            r_inf = _ratio(fit_plus_inf, den_inf, g, star)
        if fit is not None and slf is not None:
            r_self = _ratio(fit + slf, den_self, g, star)
        if goal is None:
            r_inf, r_self = r_inf.split(" ")[0], r_self.split(" ")[0]
    for key in ("self_influence_method_", "self_influence_error_"):
        if key in meta:
            notes.append(f"{key}={meta[key]}")
    if res.get("error"):
        notes.append(res["error"])
    if limit_hit:
        notes.append("child hit the time limit")
    if res.get("skipped"):
        notes.append(res["skipped"])
    err = [
        f"{meta[k]:.1e}" if meta.get(k) is not None else "-"
        for k in ("err_S", "err_self")
    ]
    return [
        case.name,
        method,
        str(meta.get("n_params", "-")),
        meta.get("curvature", "-") if method not in ("floor",) else "cholesky",
        _fmt_s(fit),
        inf_txt,
        self_txt,
        _fmt_s(res.get("peak_mb")),
        r_inf,
        r_self,
        err[0],
        err[1],
        "; ".join(notes),
    ]


DENSE_HEADER = [
    "case",
    "method",
    "p",
    "curvature",
    "fit s",
    "100 queries s",
    "self-infl s",
    "peak MiB",
    "(fit+infl)/floor",
    "(fit+self)/floor",
    "err S",
    "err self",
    "notes",
]


def text_row(case, method, res):
    t = dict(res.get("times", {}))
    mark = ""
    if t.get("self") is None and res.get("extrapolated_self") is not None:
        t["self"], mark = res["extrapolated_self"], "~"
    total = None
    if all(t.get(k) is not None for k in ("fit", "influence", "self")):
        total = t["fit"] + t["influence"] + t["self"]
    peak = res.get("peak_mb")
    verdict = "-"
    if total is not None and peak is not None:
        ok = total <= GOAL_TEXT_S and peak <= GOAL_TEXT_MB
        verdict = ("PASS" if ok else "MISS") + f"(<={GOAL_TEXT_S:g}s, <=3GB)"
    row = dense_row(case, method, res, None)
    row[8] = f"end to end {mark}{_fmt_s(total)} s {verdict}"
    row[9] = "-"
    return row


def detect_row(case, method, res):
    t, meta = res.get("times", {}), res.get("meta", {})
    ref = (res.get("ref") or {}).get("fit")
    sec = t.get("fit")
    ratio = "-"
    if sec is not None and ref:
        goal = GOAL_DETECT if method == "detector" else np.inf
        ratio = _ratio(sec, ref, goal, "")
        if method != "detector":
            ratio = ratio.split(" ")[0]
    aucs = ", ".join(
        f"{k.removeprefix('auc_')}={meta[k]:.3f}" for k in meta if k.startswith("auc_")
    )
    notes = [aucs] if aucs else []
    for key in ("curvature", "method", "self_influence_method"):
        if key in meta:
            notes.append(f"{key}={meta[key]}")
    if res.get("error"):
        notes.append(res["error"])
    if res.get("timed_out"):
        notes.append("child hit the time limit")
    return [
        case.name,
        method,
        _fmt_s(sec) if sec is not None or not res.get("timed_out") else ">limit",
        _fmt_s(ref),
        _fmt_s(res.get("peak_mb")),
        ratio,
        "; ".join(notes),
    ]


DETECT_HEADER = [
    "case",
    "method",
    "seconds",
    "one LR fit s (same child)",
    "peak MiB",
    "time / LR fit",
    "ROC AUC for the flips; notes",
]


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _floor_cost(by_method):
    t = by_method.get("floor", {}).get("times", {})
    return (t.get("fit") or 0.0) + (t.get("influence") or 0.0)


def _predicted_skip(case, method, results, limit):
    """Skip a cell whose smaller-n sibling already hit the limit, or whose
    fit + influence there, scaled by the smaller of n's growth and the floor's
    (a part such as a p^3 factorisation does not grow with n), exceeds it."""
    if case.kind != "dense" or method == "floor":
        return None
    for other, by_method in results.items():
        if (
            other.kind == "dense"
            and other.classes == case.classes
            and other.d == case.d
            and other.n < case.n
            and method in by_method
        ):
            res = by_method[method]
            if res.get("timed_out") or res.get("skipped"):
                return f"skipped: n={other.n} already hit the limit"
            t = res.get("times", {})
            spent = sum(v for k, v in t.items() if k != "self")
            grow = case.n / other.n
            before, now = _floor_cost(by_method), _floor_cost(results[case])
            if before > 0 and now > 0:
                grow = min(grow, now / before)
            if spent * grow > limit:
                return f"skipped: predicted >= {spent * grow:.0f} s from n={other.n}"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument(
        "--cases", default="", help="comma-separated names or substrings"
    )
    parser.add_argument("--methods", default="", help="comma-separated names")
    parser.add_argument("--out", default="build/scaling.md")
    parser.add_argument("--limit", type=float, default=None, help="s per method")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ref-max", type=float, default=20.0)
    parser.add_argument("--mem-cap-gb", type=float, default=8.0)
    parser.add_argument("--no-pydvl", action="store_true")
    parser.add_argument("--cache", default="build/scaling_cache")
    parser.add_argument(
        "--render", default="", help="re-render --out from these .json files"
    )
    # worker mode (internal)
    parser.add_argument("--worker-method", help=argparse.SUPPRESS)
    parser.add_argument("--case-json", help=argparse.SUPPRESS)
    parser.add_argument("--jsonl", help=argparse.SUPPRESS)
    parser.add_argument("--ref-inproc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.limit is None:
        args.limit = 10.0 if args.quick else 60.0
    if args.worker_method:
        worker(args)
        return
    warnings.simplefilter("ignore")
    from threadpoolctl import threadpool_limits

    with_pydvl = not args.no_pydvl
    if with_pydvl:
        try:
            import pydvl.influence.torch  # noqa: F401
        except ImportError:
            with_pydvl = False
            print("pyDVL not installed: its rows are skipped (make bench installs it).")
    cache = Path(args.cache)
    wanted = [s for s in args.cases.split(",") if s]
    only = [s for s in args.methods.split(",") if s]
    names = {c.name for c in all_cases(args.quick)}
    cases = [
        c
        for c in all_cases(args.quick)
        if not wanted
        or any(s == c.name or (s in c.name and s not in names) for s in wanted)
    ]
    results: dict[Case, dict[str, dict]] = {}
    if args.render:
        for path in args.render.split(","):
            for entry in json.loads(Path(path).read_text()).values():
                by_method = entry.pop("methods")
                results.setdefault(Case(**entry), {}).update(by_method)
        write_report(args, results, 0.0)
        print(Path(args.out).read_text())
        return
    started = time.perf_counter()
    print(
        f"scaling study: {len(cases)} cases, limit {args.limit:g} s per method, "
        f"best of <= {args.repeats}, single-threaded",
        flush=True,
    )
    for case in cases:
        t0 = time.perf_counter()
        with threadpool_limits(limits=1):
            prepare(case, cache)
        print(f"\n## {case.name} (data+model {time.perf_counter() - t0:.1f} s)")
        results[case] = {}
        floor = None
        for method in methods_for(case, with_pydvl, args.quick):
            if only and method not in only and method != "floor":
                continue
            skip = _predicted_skip(case, method, results, args.limit)
            if skip:
                res = {"skipped": skip, "times": {}, "meta": {}}
            else:
                ref_inproc = bool(
                    floor
                    and sum(floor.get("times", {}).values()) * args.repeats
                    <= args.ref_max
                )
                res = run_child(case, method, args, cache, ref_inproc)
            results[case][method] = res
            if method == "floor":
                floor = res
            print("  " + " | ".join(_row(case, method, res, floor)), flush=True)
        write_report(args, results, time.perf_counter() - started)
    minutes = (time.perf_counter() - started) / 60
    print(f"\nwrote {args.out} and its .json ({minutes:.1f} min)")


def _row(case, method, res, floor):
    if case.kind == "detect":
        return detect_row(case, method, res)
    if case.kind == "text":
        return text_row(case, method, res)
    return dense_row(case, method, res, floor)


def write_report(args, results, seconds):
    """Write the markdown table and the JSON (after every case)."""
    dense_rows, detect_rows = [], []
    for case, by_method in results.items():
        for method, res in by_method.items():
            row = _row(case, method, res, by_method.get("floor"))
            (detect_rows if case.kind == "detect" else dense_rows).append(row)
    body = [
        "# Scaling study (issue 14)",
        "",
        f"Command: `python benchmarks/scaling.py {' '.join(sys.argv[1:])}`  ",
        (f"Wall time {seconds / 60:.1f} min" if seconds else "Re-rendered")
        + f"; limit {args.limit:g} s per method "
        f"(floor {FLOOR_LIMIT_FACTOR}x); single-threaded; best of <= "
        f"{args.repeats}.  `*`: ratio against the floor measured in its own "
        "child (too slow to repeat per method); `~`: extrapolated; "
        "`>limit`: the child was stopped at the limit.",
        "",
    ]
    if dense_rows:
        body += [md_table(DENSE_HEADER, dense_rows), ""]
    if detect_rows:
        body += [md_table(DETECT_HEADER, detect_rows), ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(body))
    dump = {c.name: {**asdict(c), "methods": m} for c, m in results.items()}
    out.with_suffix(".json").write_text(json.dumps(dump, indent=1, default=str))


if __name__ == "__main__":
    main()
