"""Leave-one-out fidelity, seconds and peak memory, side by side in one run.

Task (Koh & Liang's protocol at CPU scale, as in ``shared/reference/benchmarks.md``):
L2 logistic regression with lambda = 0.01 on the mean loss (``C = 1/(n lambda)``),
unpenalised intercept, 70/30 stratified split, StandardScaler fitted on the
training part; the highest-loss test point; every training point removed and
the model retrained (warm start, tol 1e-10) as the ground truth.

Methods, each timed from the fitted model to the influence of the test point
on every training point:

* ``numpy floor``: the closed form written out here -- Hessian, one Cholesky,
  one solve, one GEMM against the per-sample gradients;
* ``skinfluence exact`` / ``skinfluence cg``: ``InfluenceScorer`` around the
  same fitted model (``FrozenEstimator``: no refit), ``fit`` + ``influence``;
* ``pyDVL direct`` / ``pyDVL cg`` (optional: ``pip install
  "pydvl[influence]==0.10.0"``, see ``_pydvl_ref.py`` for an install that
  keeps numpy/torch) on a torch model with the same objective.

Everything runs single-threaded (BLAS and torch) so that a shared 2-core
machine gives comparable numbers.  Seconds are the best of three runs; peak
memory is the extra resident memory of one run in a forked child
(``_measure.py``).  Ratios are against the numpy floor and pyDVL direct
measured in the same process.

Run: ``python benchmarks/loo_fidelity.py`` (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import linalg, stats
from scipy.special import expit, softmax
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _measure import best_seconds, peak_memory_mb  # noqa: E402

from skinfluence import InfluenceScorer  # noqa: E402
from skinfluence.curvature import CGCurvature  # noqa: E402
from skinfluence.evaluation import loo_change  # noqa: E402

LAM = 0.01


def load_task(name: str):
    X, y = {"breast_cancer": load_breast_cancer, "digits": load_digits}[name](
        return_X_y=True
    )
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    n = len(ytr)
    model = LogisticRegression(C=1.0 / (n * LAM), tol=1e-10, max_iter=10_000)
    model.fit(Xtr, ytr)
    proba = model.predict_proba(Xte)[np.arange(len(yte)), yte]
    j = int(np.argmin(proba))  # highest-loss test point
    return model, Xtr, ytr, Xte[j : j + 1], yte[j : j + 1]


def numpy_floor(model, Xtr, ytr, xq, yq):
    """Closed form, written out: H, one Cholesky, one solve, one GEMM."""
    n = len(ytr)
    Xt = np.hstack([Xtr, np.ones((n, 1))])
    xt = np.hstack([xq, np.ones((1, 1))])
    W = np.hstack([model.coef_, model.intercept_[:, None]])  # (K, d+1)
    K, dt = W.shape
    mask = np.ones((K, dt))
    mask[:, -1] = 0.0  # intercept unpenalised
    if K == 1:
        p = expit(Xt @ W[0])
        G = (p - ytr)[:, None] * Xt
        H = (Xt * (p * (1 - p))[:, None]).T @ Xt / n
        gq = ((expit(xt @ W[0]) - yq)[:, None] * xt)[0]
    else:
        P = softmax(Xt @ W.T, axis=1)
        Y = np.eye(K)[ytr]
        G = ((P - Y)[:, :, None] * Xt[:, None, :]).reshape(n, -1)
        H = np.zeros((K, dt, K, dt))
        for k in range(K):
            for m in range(K):
                a = P[:, k] * ((k == m) - P[:, m])
                H[k, :, m, :] = (Xt * a[:, None]).T @ Xt / n
        H = H.reshape(K * dt, K * dt)
        # the flat direction: the same shift of every intercept
        v = np.zeros((K, dt))
        v[:, -1] = 1 / np.sqrt(K)
        H += np.outer(v.ravel(), v.ravel())
        pq = softmax(xt @ W.T, axis=1)
        gq = ((pq - np.eye(K)[yq])[:, :, None] * xt[:, None, :]).reshape(-1)
    H[np.diag_indices_from(H)] += LAM * mask.ravel()
    q = linalg.cho_solve(linalg.cho_factor(H, lower=True), gq)
    return G @ q


def skinfluence_scores(curvature):
    def run(model, Xtr, ytr, xq, yq):
        scorer = InfluenceScorer(FrozenEstimator(model), curvature=curvature)
        return scorer.fit(Xtr, ytr).influence(xq, yq)[0]

    return run


def pydvl_scores(method):
    def run(model, Xtr, ytr, xq, yq):
        from _pydvl_ref import pydvl_removal_scores

        return pydvl_removal_scores(
            method,
            Xtr,
            ytr,
            xq,
            yq,
            model.coef_,
            model.intercept_,
            l2=LAM,
            classes=model.classes_,
        )[0]

    return run


def methods(with_pydvl: bool):
    out = {
        "numpy floor": numpy_floor,
        "skinfluence exact": skinfluence_scores("exact"),
        "skinfluence cg": skinfluence_scores(CGCurvature(rtol=1e-8)),
    }
    if with_pydvl:
        out["pyDVL direct"] = pydvl_scores("direct")
        out["pyDVL cg"] = pydvl_scores("cg")
    return out


def pydvl_available() -> bool:
    try:
        import pydvl.influence.torch  # noqa: F401
    except ImportError:
        return False
    return True


def run_task(name: str, with_pydvl: bool, repeats: int) -> list[dict]:
    model, Xtr, ytr, xq, yq = load_task(name)
    n = len(ytr)
    print(f"\n## {name}: n_train={n}, p={model.coef_.size + model.intercept_.size}")
    scorer = InfluenceScorer(FrozenEstimator(model)).fit(Xtr, ytr)
    actual = loo_change(scorer, xq, yq, np.arange(n), warm_start=True)[0]
    rows = []
    for label, fn in methods(with_pydvl).items():

        def call(fn=fn):
            return fn(model, Xtr, ytr, xq, yq)

        scores, seconds = best_seconds(call, repeats)
        predicted = scores / n
        rows.append(
            {
                "task": name,
                "method": label,
                "pearson": stats.pearsonr(predicted, actual)[0],
                "spearman": stats.spearmanr(predicted, actual)[0],
                "seconds": seconds,
                "peak_mb": peak_memory_mb(call),
                "scores": scores,
            }
        )
    floor = rows[0]
    for row in rows:
        row["vs_floor"] = row["seconds"] / floor["seconds"]
        row["max_rel_diff_floor"] = np.abs(row["scores"] - floor["scores"]).max() / (
            np.abs(floor["scores"]).max()
        )
    direct = next((r for r in rows if r["method"] == "pyDVL direct"), None)
    header = (
        f"{'method':20} {'Pearson':>8} {'Spearman':>9} {'seconds':>9} "
        f"{'peak MB':>8} {'x floor':>8} {'pyDVL/x':>8} {'|d| vs floor':>12}"
    )
    print(header)
    for r in rows:
        speedup = direct["seconds"] / r["seconds"] if direct else float("nan")
        print(
            f"{r['method']:20} {r['pearson']:8.4f} {r['spearman']:9.4f} "
            f"{r['seconds']:9.4f} {r['peak_mb']:8.1f} {r['vs_floor']:8.2f} "
            f"{speedup:8.1f} {r['max_rel_diff_floor']:12.1e}"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["breast_cancer", "digits"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pydvl", action="store_true")
    args = parser.parse_args(argv)
    with_pydvl = not args.no_pydvl and pydvl_available()
    if not with_pydvl:
        print("pyDVL not installed: its rows are skipped (make bench installs it).")
    warnings.simplefilter("ignore", UserWarning)
    if with_pydvl:
        import torch

        torch.set_num_threads(1)
    print(
        "Columns: LOO Pearson/Spearman over all training points; best-of-"
        f"{args.repeats} seconds; peak extra RSS; time / numpy floor; pyDVL "
        "direct time / this time; max |score - floor| / max |floor|."
    )
    with threadpool_limits(limits=1):
        for task in args.tasks:
            run_task(task, with_pydvl, args.repeats)


if __name__ == "__main__":
    main()
