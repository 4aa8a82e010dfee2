"""DaskInfluenceScorer on a LocalCluster against InfluenceScorer in memory.

Binary logistic regression, n = 200,000 x d = 50, the training set a Dask
array in 8 row blocks on a ``LocalCluster`` (processes, 2 workers, 1 thread
each).  Timed, best of 3: ``fit`` + ``self_influence`` + ``influence`` of 10
queries, computed to numpy on the client; the same work with
``InfluenceScorer(curvature="exact")`` on the numpy arrays.  Also checks that
the two agree.

Run (single-threaded BLAS in every process)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/dask_blockwise.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression

    from skinfluence import DaskInfluenceScorer, InfluenceScorer

    t0 = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(__import__, "skinfluence.estimators")
        start = time.perf_counter() - t0
        # the training set is made on the workers (as da.from_zarr would read
        # it there); the in-memory side gets a copy of the same numbers
        rows = -(-args.n // args.blocks)
        rng = da.random.default_rng(0)
        Xd = rng.standard_normal((args.n, args.d), chunks=(rows, args.d))
        w = np.random.default_rng(1).standard_normal(args.d)
        noise = rng.logistic(size=args.n, chunks=rows)
        yd = ((Xd @ w + noise) > 0).astype(int)
        Xd, yd = client.persist([Xd, yd])
        X, y = client.compute([Xd, yd], sync=True)
        model = LogisticRegression(tol=1e-10, max_iter=1000).fit(X, y)
        model = FrozenEstimator(model)
        Xq, yq = X[:10] + 0.1, y[:10]

        def in_memory():
            scorer = InfluenceScorer(model, curvature="exact").fit(X, y)
            return scorer.self_influence_, scorer.influence(Xq, yq)

        phases = {}

        def on_cluster():
            t = [time.perf_counter()]
            scorer = DaskInfluenceScorer(model).fit(Xd, yd)
            t.append(time.perf_counter())
            s = scorer.self_influence().compute()
            t.append(time.perf_counter())
            S = scorer.influence(Xq, yq).compute()
            t.append(time.perf_counter())
            names = ("fit", "self_influence", "influence")
            phases.update({k: t[i + 1] - t[i] for i, k in enumerate(names)})
            return s, S

        times = {"dask": [], "memory": []}
        for _ in range(args.repeats):
            for name, run in (("dask", on_cluster), ("memory", in_memory)):
                t = time.perf_counter()
                out = run()
                times[name].append(time.perf_counter() - t)
                if name == "dask":
                    s_d, S_d = out
                    print(
                        "dask phases (s):", {k: round(v, 3) for k, v in phases.items()}
                    )
                else:
                    s_m, S_m = out
    err_s = np.max(np.abs(s_d - s_m)) / np.max(np.abs(s_m))
    err_S = np.max(np.abs(S_d - S_m)) / np.max(np.abs(S_m))
    best_d, best_m = min(times["dask"]), min(times["memory"])
    print(f"n={args.n} d={args.d} blocks={args.blocks} (data persisted on workers)")
    print(f"cluster start-up: {start:.2f} s")
    print(f"DaskInfluenceScorer fit+self_influence+influence(10): {best_d:.3f} s")
    print(f"InfluenceScorer exact in memory, same work:          {best_m:.3f} s")
    print(f"ratio dask/memory: {best_d / best_m:.2f}")
    print(f"max relative difference: self {err_s:.1e}, influence {err_S:.1e}")


if __name__ == "__main__":
    main()
