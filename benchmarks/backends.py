"""Every curvature backend on digits logistic regression and a digits MLP.

For each backend: correlation of its influence scores with the exact damped
Hessian's, correlation with actual leave-one-out retraining (warm start),
seconds (fit + influence of the query points) and peak extra memory; pyDVL's
matching influence models side by side in the same process when installed
(``make bench``).

Setting
-------
* digits, 80/20 stratified split (seed 0), StandardScaler on the training part;
* LR: multinomial logistic regression, lambda = 0.01 on the mean loss
  (``C = 1/(n lambda)``), unpenalised intercept;
* MLP: 64-32-10, tanh, float64, weight decay 1e-3 on all parameters, trained
  to an optimum by full-batch L-BFGS (``TorchClassifier``); damping 1e-3 for
  every backend (pyDVL: ``regularization = weight decay + damping``);
* queries: the first misclassified test points; LOO: the training points with
  the largest exact |influence| (Koh & Liang's protocol), retrained warm.

Everything runs single-threaded (BLAS and torch).  Seconds: best of
``--repeats`` runs.  Run: ``python benchmarks/backends.py`` (several minutes).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _measure import best_seconds, peak_memory_mb  # noqa: E402

from skinfluence import InfluenceScorer, TorchClassifier  # noqa: E402
from skinfluence.evaluation import loo_change  # noqa: E402

BACKENDS = ["exact", "cg", "lissa", "ggn", "lowrank", "ef", "diagonal", "identity"]


def load():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def models(Xtr, ytr):
    n = len(ytr)
    lr = LogisticRegression(C=1 / (0.01 * n), tol=1e-10, max_iter=10_000).fit(Xtr, ytr)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)
    )
    net = TorchClassifier(mlp, weight_decay=1e-3, random_state=0, max_iter=5000)
    return {"digits LR": (lr, 0.0), "digits MLP": (net.fit(Xtr, ytr), 1e-3)}


def corr(S, R, kind="pearson"):
    fn = stats.pearsonr if kind == "pearson" else stats.spearmanr
    return float(np.mean([fn(s, r)[0] for s, r in zip(S, R, strict=True)]))


def skinfluence_run(model, damping, backend, Xtr, ytr, Xq, yq):
    def run():
        scorer = InfluenceScorer(
            FrozenEstimator(model), curvature=backend, damping=damping, random_state=0
        )
        return scorer.fit(Xtr, ytr).influence(Xq, yq)

    return run


def pydvl_runs(name, model, damping, Xtr, ytr, Xq, yq):
    from _pydvl_ref import pydvl_module_scores, pydvl_removal_scores

    runs = {}
    for method in ["direct", "cg", "lissa", "arnoldi"]:
        if name == "digits LR":

            def run(method=method):
                return pydvl_removal_scores(
                    method,
                    Xtr,
                    ytr,
                    Xq,
                    yq,
                    model.coef_,
                    model.intercept_,
                    l2=1 / (model.C * len(ytr)),
                    classes=model.classes_,
                )

        else:

            def run(method=method):
                return pydvl_module_scores(
                    method,
                    model.module_,
                    Xtr,
                    ytr,
                    Xq,
                    yq,
                    regularization=model.weight_decay + damping,
                )

        runs[f"pyDVL {method}"] = run
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--loo-points", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-pydvl", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    try:
        import pydvl.influence.torch  # noqa: F401

        with_pydvl = not args.no_pydvl
    except ImportError:
        with_pydvl = False
        print("pyDVL not installed: its rows are skipped (make bench installs it).")
    Xtr, Xte, ytr, yte = load()
    with threadpool_limits(limits=1):
        for name, (model, damping) in models(Xtr, ytr).items():
            wrong = np.flatnonzero(model.predict(Xte) != yte)[: args.queries]
            Xq, yq = Xte[wrong], yte[wrong]
            exact, _ = best_seconds(
                skinfluence_run(model, damping, "exact", Xtr, ytr, Xq, yq), 1
            )
            n = len(ytr)
            idx = np.argsort(-np.abs(exact).max(axis=0))[: args.loo_points]
            ref = InfluenceScorer(FrozenEstimator(model), damping=damping).fit(Xtr, ytr)
            actual = loo_change(ref, Xq, yq, idx, warm_start=True)
            runs = {
                b: skinfluence_run(model, damping, b, Xtr, ytr, Xq, yq)
                for b in BACKENDS
            }
            if with_pydvl:
                runs.update(pydvl_runs(name, model, damping, Xtr, ytr, Xq, yq))
            print(
                f"\n## {name}: n_train={n}, p={ref.adapter_.n_params}, "
                f"{len(wrong)} misclassified queries, {len(idx)} LOO refits"
            )
            print(
                f"{'method':16} {'r(exact)':>9} {'rho(exact)':>10} {'r(LOO)':>8} "
                f"{'rho(LOO)':>9} {'seconds':>8} {'peak MB':>8}"
            )
            for label, run in runs.items():
                S, seconds = best_seconds(run, args.repeats)
                P = S[:, idx] / n
                print(
                    f"{label:16} {corr(S, exact):9.4f} "
                    f"{corr(S, exact, 'spearman'):10.4f} {corr(P, actual):8.4f} "
                    f"{corr(P, actual, 'spearman'):9.4f} "
                    f"{seconds:8.2f} {peak_memory_mb(run):8.1f}"
                )


if __name__ == "__main__":
    main()
