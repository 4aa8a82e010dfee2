"""What do influence functions estimate on a network?  Bae et al. (2022) at CPU scale.

For an MLP trained only ~20 epochs (Adam, far from an optimum) on digits and
on breast_cancer, compare the damped Gauss-Newton influence of removing a
training point on a test loss with five responses to that removal:

* cold-start LOO: the original recipe (same seed) on the reduced data;
* warm-start LOO: the original recipe continued from the trained parameters;
* proximal: the training objective without the point, plus
  ``(damping/2) ||theta - theta_s||^2``, minimised from ``theta_s``;
* PBRF: the proximal Bregman response function (what influence linearises),
  removing the whole point (Bae et al.'s ``epsilon = -1/n``) and, as its
  derivative, ``EPSILON`` of it (rescaled), with the solver's convergence;
* influence with a practical solver (LiSSA on the same Gauss-Newton system)
  instead of the exact inverse.

It prints the seed's table analogue (Pearson / Spearman of influence against
cold, warm, proximal and PBRF) and the five-term decomposition -- mean absolute
difference between consecutive responses (cold/warm, warm/proximal,
proximal/PBRF, PBRF/exact influence, exact/LiSSA influence) -- and saves the
decomposition as a bar plot in ``build/bae_pbrf.png``.

Run: ``python benchmarks/bae_pbrf.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from skinfluence import InfluenceScorer, TorchClassifier  # noqa: E402
from skinfluence.curvature import LiSSACurvature  # noqa: E402
from skinfluence.evaluation import (  # noqa: E402
    loo_change,
    pbrf_change,
    proximal_change,
)

DAMPING = 1e-2
#: Fraction removed for the PBRF's derivative (what influence linearises).
EPSILON = 0.02


def task(name: str, n_train: int):
    loader = {"digits": load_digits, "breast_cancer": load_breast_cancer}[name]
    X, y = loader(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    scaler = StandardScaler().fit(Xtr)
    Xtr, Xte = scaler.transform(Xtr)[:n_train], scaler.transform(Xte)
    torch.manual_seed(0)
    k = len(np.unique(y))
    mlp = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], 32), torch.nn.Tanh(), torch.nn.Linear(32, k)
    )
    net = TorchClassifier(
        mlp, optimizer="adam", lr=1e-2, max_iter=20, batch_size=32, random_state=0
    )
    return net, Xtr, ytr[:n_train], Xte, yte


def corr(a, b, kind):
    fn = stats.pearsonr if kind == "pearson" else stats.spearmanr
    return float(np.mean([fn(x, z)[0] for x, z in zip(a, b, strict=True)]))


def run(name: str, n_train: int, n_points: int, n_queries: int) -> dict:
    net, Xtr, ytr, Xte, yte = task(name, n_train)
    scorer = InfluenceScorer(net, curvature="ggn", damping=DAMPING).fit(Xtr, ytr)
    n = scorer.n_train_
    rng = np.random.default_rng(0)
    q = rng.choice(len(yte), n_queries, replace=False)
    idx = rng.choice(n, n_points, replace=False)
    Xq, yq = Xte[q], yte[q]
    influence = scorer.influence(Xq, yq)[:, idx] / n
    lissa = InfluenceScorer(
        net,
        curvature=LiSSACurvature(depth=3000, operator="ggn", random_state=0),
        damping=DAMPING,
    ).fit(Xtr, ytr)
    responses = {
        "cold-start": loo_change(scorer, Xq, yq, idx, warm_start=False),
        "warm-start": loo_change(scorer, Xq, yq, idx, warm_start=True),
        "proximal": proximal_change(scorer, Xq, yq, idx),
        "PBRF": pbrf_change(scorer, Xq, yq, idx, return_info=True),
        "influence (exact GGN)": influence,
        "influence (LiSSA)": lissa.influence(Xq, yq)[:, idx] / n,
    }
    responses["PBRF"], info = responses["PBRF"]
    pbrf_eps = pbrf_change(scorer, Xq, yq, idx, epsilon=EPSILON)
    print(
        f"\n## {name} MLP: n_train={n}, grad_norm={scorer.grad_norm_:.2g} "
        f"(not converged), {n_queries} test points x {n_points} removals"
    )
    print(f"{'influence vs':12} {'Pearson':>8} {'Spearman':>9}")
    for key in ["cold-start", "warm-start", "proximal", "PBRF"]:
        r = corr(influence, responses[key], "pearson")
        rho = corr(influence, responses[key], "spearman")
        print(f"{key:12} {r:8.3f} {rho:9.3f}")
    for key, ref in [(f"PBRF eps={EPSILON}", pbrf_eps)]:
        r = corr(influence, ref, "pearson")
        rho = corr(influence, ref, "spearman")
        print(f"{key:12} {r:8.3f} {rho:9.3f}")
    print(
        f"PBRF solves (epsilon=1): {int(info['converged'].sum())}/{len(idx)} "
        f"converged, relative gradient norm median "
        f"{np.median(info['grad_norm']):.1e}, max {np.max(info['grad_norm']):.1e}; "
        f"{int(np.sum(info['curvature'] <= 0))} removal(s) with non-positive "
        "curvature at theta_s along the response (the removed point's own "
        "Hessian beats the damping)"
    )
    names = list(responses)
    terms = {
        f"{a} -> {b}": float(np.mean(np.abs(responses[a] - responses[b])))
        for a, b in zip(names[:-1], names[1:], strict=True)
    }
    print("decomposition (mean |difference| of predicted/actual loss changes):")
    for key, value in terms.items():
        print(f"  {key:45} {value:.2e}")
    return terms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=30)
    parser.add_argument("--queries", type=int, default=5)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        results = {
            "digits": run("digits", 600, args.points, args.queries),
            "breast_cancer": run("breast_cancer", 455, args.points, args.queries),
        }
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = list(next(iter(results.values())))
    width = 0.4
    for k, (name, terms) in enumerate(results.items()):
        pos = np.arange(len(labels)) + (k - 0.5) * width
        ax.bar(pos, [terms[t] for t in labels], width, label=name)
    ax.set_xticks(np.arange(len(labels)), [t.replace(" -> ", "\n-> ") for t in labels])
    ax.set_yscale("log")
    ax.set_ylabel("mean |difference|")
    ax.set_title("Where influence and leave-one-out part ways (Bae et al. 2022)")
    ax.legend()
    fig.tight_layout()
    out = Path("build") / "bae_pbrf.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print(f"\nplot saved to {out}")


if __name__ == "__main__":
    main()
