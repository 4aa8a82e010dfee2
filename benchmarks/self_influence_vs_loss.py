"""Why self-influence finds flipped labels less well than the loss at large n.

On the detection case of ``benchmarks/scaling.py`` (10-class logistic
regression on Gaussian features, 10 % of labels flipped, n >> p, so the model
cannot memorise the flips) the plain in-sample loss ranks the flips better
than self-influence.  Self-influence of row ``i`` is ``g_i^T H^{-1} g_i`` with
``g_i = r_i (x) x~_i``: the squared residual ``||r_i||^2`` times a leverage
part ``s_i / ||r_i||^2``, which is mostly ``||x_i||^2`` (correlation ~0.93)
and carries no information about which labels were flipped (AUC ~0.5).  The
product therefore ranks worse than the residual alone.  Self-influence earns
its place where the model fits the flipped labels (small loss), e.g. a
memorising MLP (``benchmarks/noisy_labels.py``).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/self_influence_vs_loss.py [n]
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
import scaling  # noqa: E402

from skinfluence import InfluenceScorer  # noqa: E402


def main(n: int = 20_000) -> None:
    warnings.simplefilter("ignore")
    case = scaling.Case(f"detect-n{n}", "detect", n, 50, 10)
    X, y, noisy, _ = scaling.generate(case)
    with threadpool_limits(limits=1):
        scorer = InfluenceScorer(LogisticRegression(max_iter=1000, tol=1e-8))
        scorer.fit(X, y)
        adapter = scorer.adapter_
        self_influence = scorer.self_influence_
        loss = adapter.loss(X, y)
        G = adapter.train_grads(slice(None))
    # g_i = r_i (x) x~_i: ||g_i||^2 = ||r_i||^2 ||x~_i||^2
    xt_sq = np.sum(X**2, axis=1) + 1.0
    r_sq = np.sum(G**2, axis=1) / xt_sq
    leverage = self_influence / r_sq
    print(f"n = {n}, flipped {noisy.mean():.0%}; ROC AUC for finding the flips:")
    for name, score in [
        ("in-sample loss", loss),
        ("self-influence", self_influence),
        ("squared residual ||r_i||^2", r_sq),
        ("leverage part s_i / ||r_i||^2", leverage),
        ("||x_i||^2", xt_sq),
    ]:
        print(f"  {name:32s} {roc_auc_score(noisy, score):.3f}")
    print(
        "  correlation of the leverage part with ||x_i||^2: "
        f"{np.corrcoef(leverage, xt_sq)[0, 1]:.2f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
