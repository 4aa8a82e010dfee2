"""A ~94k-parameter MLP at real size: every network backend streams its rows.

Setting
-------
* an MLP 100-256-256-10 (ReLU, 94,218 parameters) trained by Adam for a few
  epochs (a net away from its optimum, as users bring them) on generated
  rows (10 classes, 100 features);
* ``InfluenceScorer(curvature=..., damping=1e-3)``: fit, then the influence
  of ``--queries`` test rows on every training row;
* dense ``"ggn"``/``"exact"`` would need a 94k x 94k matrix (66 GiB): they
  are refused before allocating, and the message is printed.

Reported per backend: seconds (fit + influence), peak extra memory (MiB) of
the same work in a forked child, and the backend ``"auto"`` picked.  Single
threaded.  Run: ``python benchmarks/network_size.py --rows 500 --queries 10``
(``--only ekfac kfac`` for a subset).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import peak_memory_mb  # noqa: E402

from skinfluence import InfluenceScorer, TorchClassifier  # noqa: E402
from skinfluence.curvature import CGCurvature, LiSSACurvature  # noqa: E402


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, 100))
    y = rng.integers(0, 10, n)
    X = centres[y] + 2.0 * rng.standard_normal((n, 100))
    return X, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="backend names")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X, y = _data(args.rows + args.queries)
    Xtr, ytr = X[: args.rows], y[: args.rows]
    Xq, yq = X[args.rows :], y[args.rows :]
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(100, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    clf = TorchClassifier(
        mlp, optimizer="adam", lr=1e-3, max_iter=3, batch_size=64, random_state=0
    ).fit(Xtr, ytr)
    n_params = sum(p.numel() for p in clf.module_.parameters())
    print(f"MLP 100-256-256-10: {n_params} parameters, {args.rows} rows")
    backends = {
        "auto": "auto",
        "cg (Hessian)": CGCurvature(rtol=1e-4, maxiter=100),
        "cg (GGN)": CGCurvature(operator="ggn", rtol=1e-4, maxiter=100),
        "lissa (GGN)": LiSSACurvature(
            depth=100, batch_size=128, operator="ggn", random_state=0
        ),
        "ekfac": "ekfac",
        "kfac": "kfac",
        "ggn (dense)": "ggn",
    }
    print(f"{'backend':<14} {'picked':<30} {'seconds':>8} {'peak MiB':>9}")
    for name, curvature in backends.items():
        if args.only and name not in args.only:
            continue
        scorer = InfluenceScorer(
            FrozenEstimator(clf),
            curvature=curvature,
            damping=1e-3,
            batch_size=args.batch_size,
            random_state=0,
        )

        def work(scorer=scorer):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return scorer.fit(Xtr, ytr).influence(Xq, yq)

        try:
            t0 = time.perf_counter()
            S = work()
            seconds = time.perf_counter() - t0
        except ValueError as exc:
            print(f"{name:<14} refused: {exc}")
            continue
        assert S.shape == (args.queries, args.rows) and np.all(np.isfinite(S))
        peak = peak_memory_mb(work)
        print(f"{name:<14} {scorer.curvature_!r:<30} {seconds:8.1f} {peak:9.0f}")


if __name__ == "__main__":
    with threadpool_limits(limits=1):
        main()
