"""Better Hessians Matter on digits: H -> GGN -> block GGN -> EK-FAC -> K-FAC.

The setting of Hong, Eschenhagen, Mlodozeniec and Turner (2025), official
code ``SteveHong1901/Hessian`` (see ``shared/reference/seed-algorithms.md``
section 3.2), on one CPU core:

* digits, one permutation (``RandomState(0)``), 90/10 split: 1,617 train /
  180 validation points, ``StandardScaler`` fitted on train;
* MLP 64-64-32-10 with GELU (6,570 parameters), cross-entropy, no weight
  decay, trained by SGD (momentum 0.9, lr 0.03, cosine schedule, batch 32,
  ``drop_last``) for ``--epochs`` epochs (100 in the paper), seed 42, through
  skorch (whose adapter also provides the cold-start retrain hook);
* LDS (``skinfluence.evaluation``): ``--subsets`` random subsets keeping
  ``alpha`` of the training set, each retrained from scratch with the same
  recipe ``--seeds`` times; one set of retrains scores every curvature;
  queries are the 180 validation losses; bootstrap 95% interval over subsets.

The chain of curvatures, each damped by the same ``lam`` (``--damping``):

1. ``H``: the exact Hessian (dense, from Hessian-vector products).  It is
   indefinite here; as ``ExactCurvature`` does, the inverse keeps only the
   eigenvalues of ``H + lam I`` above ``1e-10`` times the largest magnitude
   (negative ones are dropped).
2. ``GGN``: the Gauss-Newton matrix (= Fisher for softmax cross-entropy).
3. ``block GGN``: its diagonal blocks, one per layer (weight + bias).
4. ``(a) EK-FAC exact diag``: the K-FAC eigenbasis ``Q = Q_S (x) Q_A`` of
   type-2 factors (exact per-sample GGN) with the Frobenius-optimal diagonal
   ``diag(Q^T G_l Q)`` (step 3 -> 4 is the eigenbasis error);
5. ``(b) EK-FAC MC diag``: the same basis, ``Lambda`` refitted from one
   sampled label per row (step 4 -> 5 is the Monte Carlo error of the
   eigenvalues);
6. ``(c) K-FAC``: the same basis, eigenvalues ``lam_S (x) lam_A`` (the
   eigenvalue mismatch the paper singles out is (a) -> (c)), exact damping;
7. ``identity``: the gradient dot product.

Off the chain: block GGN per parameter tensor (the paper code's blocks),
``Lambda`` from 100 sampled labels per row, K-FAC with the factored heuristic
damping, the backends with sampled labels as shipped (``fisher="mc"``,
1/10/100 samples, three seeds), and kronfluence's EK-FAC on the same network,
timed against skinfluence's in the same process.

For each: LDS, the relative Frobenius distance of the (undamped) curvature
to the previous step and to the GGN, the relative error of its damped
inverse applied to the 180 real validation gradients (to the previous step
and to the GGN's), and the Pearson correlation of its scores with H's.

Findings (measured 2026-11 with the defaults, 595 s on one core; LDS with
100 subsets x 3 cold retrains, alpha 0.5; 95% intervals are about +-0.02):

* ``lam = 1e-4`` (the paper code's default): H 0.18, GGN 0.48, block GGN
  0.47, (a) 0.41, (b) 0.28, (c) K-FAC 0.43, identity 0.27.  H has 2,684
  negative eigenvalues down to -6.3e-4, so at this damping its inverse is
  dominated by near-singular directions: H is far below the GGN.
* ``lam = 1e-3``: H 0.50, GGN 0.51, block GGN 0.43, (a) 0.35, (b) 0.27,
  (c) 0.36, identity 0.27.
* The expected ordering holds from the GGN down to the block GGN and to the
  identity, but not between EK-FAC and K-FAC: with exact (type-2) factors
  K-FAC's eigenvalues score slightly *higher* than the Frobenius-optimal
  diagonal in the same basis, although they are far from it (relative
  error 0.69-0.95 per layer).  The largest losses are the eigenbasis (block
  GGN -> (a)) and, above all, one sampled label per row: the network
  interpolates its training set, the expected number of sampled labels that
  differ from the prediction is 0.7 per pass, so the one-sample Fisher's
  trace is 0.005x or 2x the true one depending on the seed and EK-FAC/K-FAC
  fall to the identity's LDS (kronfluence's EK-FAC too: 0.25).  100 samples
  per row recover 0.41-0.42.
* EK-FAC on this MLP: skinfluence fits in 0.012 s and scores 180 x 1,617 in
  0.16 s; kronfluence (float32, factors written to disk) 1.0-1.2 s and
  0.68-0.80 s, 90-100x and 4-5x slower, mostly fixed costs at this size.

Everything runs single-threaded.  Run: ``python benchmarks/better_hessians.py``
(about 10-15 minutes with the defaults; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _measure import best_seconds, peak_memory_mb  # noqa: E402

from skinfluence import InfluenceScorer  # noqa: E402
from skinfluence.curvature import (  # noqa: E402
    BlockGGNCurvature,
    EKFACCurvature,
    KFACCurvature,
)
from skinfluence.evaluation import lds_from_scores, lds_ground_truth  # noqa: E402

# ---------------------------------------------------------------------------
# Setting
# ---------------------------------------------------------------------------


class MLP(torch.nn.Module):
    """64-64-32-10 GELU, as ``ModelConfig(hidden_sizes=(64, 32))``."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 64),
            torch.nn.GELU(),
            torch.nn.Linear(64, 32),
            torch.nn.GELU(),
            torch.nn.Linear(32, 10),
        )

    def forward(self, x):
        return self.net(x)


def load():
    X, y = load_digits(return_X_y=True)
    perm = np.random.RandomState(0).permutation(len(X))
    X, y = X[perm], y[perm]
    n = int(0.9 * len(X))
    scaler = StandardScaler().fit(X[:n])
    f32 = np.float32
    return (
        scaler.transform(X[:n]).astype(f32),
        scaler.transform(X[n:]).astype(f32),
        y[:n],
        y[n:],
    )


def make_net(epochs):
    from skorch import NeuralNetClassifier
    from skorch.callbacks import LRScheduler

    cosine = LRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=epochs)
    return NeuralNetClassifier(
        MLP,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        lr=0.03,
        batch_size=32,
        iterator_train__shuffle=True,
        iterator_train__drop_last=True,
        max_epochs=epochs,
        train_split=None,
        callbacks=[("cosine", cosine)],
        verbose=0,
    )


# ---------------------------------------------------------------------------
# Dense curvatures and their damped inverses
# ---------------------------------------------------------------------------


class EigenInverse:
    """``(C + lam I)^+`` from one eigendecomposition, for any ``lam``.

    Eigenvalues of ``C + lam I`` at or below ``1e-10`` times the largest
    magnitude get an inverse of 0 (``ExactCurvature``'s fallback rule).
    """

    def __init__(self, C):
        self.w, self.Q = linalg.eigh(C)

    def solve(self, V, lam):
        d = self.w + lam
        keep = d > 1e-10 * np.max(np.abs(d))
        inv = np.where(keep, 1.0 / np.where(keep, d, 1.0), 0.0)
        return self.Q @ (inv[:, None] * (self.Q.T @ V))


def exact_diagonal(G_block, f):
    """``diag(Q^T G_l Q)`` on the (n_out, n_in) grid, ``Q = Q_S (x) Q_A``."""
    n_out, n_in = f.layer.n_out, f.layer.n_in
    G4 = G_block.reshape(n_out, n_in, n_out, n_in)
    R = np.einsum("oiqj,qc->oicj", G4, f.Q_S, optimize=True)
    R = np.einsum("oicj,jd->oicd", R, f.Q_A, optimize=True)
    return np.einsum("oc,id,oicd->cd", f.Q_S, f.Q_A, R, optimize=True)


def eigenbasis_dense(backend, eigenvalues, p):
    """Block-diagonal ``Q diag(eigenvalues) Q^T`` (penalty-free model)."""
    C = np.zeros((p, p))
    for f, d in zip(backend.factors_, eigenvalues, strict=True):
        Q = f.basis()
        C[np.ix_(f.layer.index, f.layer.index)] = (Q * d.ravel()) @ Q.T
    return C


def eigenbasis_solve(backend, eigenvalues, V, lam):
    """``Q (diag(eigenvalues) + lam)^{-1} Q^T V`` per layer."""
    out = np.empty_like(V)
    k = V.shape[1]
    for f, d in zip(backend.factors_, eigenvalues, strict=True):
        ly = f.layer
        Vl = V[ly.index].T.reshape(k, ly.n_out, ly.n_in)
        Y = f.Q_S.T @ Vl @ f.Q_A / (d + lam)
        out[ly.index] = (f.Q_S @ Y @ f.Q_A.T).reshape(k, -1).T
    return out


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------------------
# kronfluence on the same network
# ---------------------------------------------------------------------------


def kronfluence_runs(module, Xtr, ytr, Xq, yq, lam, workdir):
    """``(fit, score)`` closures for kronfluence's EK-FAC (its defaults:
    float32 per-sample gradients and scores, sampled labels for the Fisher)."""
    import torch.nn.functional as F
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    class Classification(Task):
        def compute_train_loss(self, batch, model, sample=False):
            x, y = batch
            logits = model(x)
            if sample:
                with torch.no_grad():
                    probs = torch.softmax(logits.detach(), dim=-1)
                    y = torch.multinomial(probs, num_samples=1).flatten()
            return F.cross_entropy(logits, y, reduction="sum")

        def compute_measurement(self, batch, model):
            x, y = batch
            return F.cross_entropy(model(x), y, reduction="sum")

    task = Classification()
    model = prepare_model(copy.deepcopy(module).float().eval(), task)
    analyzer = Analyzer(
        "bhm", model=model, task=task, cpu=True, disable_tqdm=True, output_dir=workdir
    )
    train = torch.utils.data.TensorDataset(
        torch.as_tensor(Xtr), torch.as_tensor(ytr, dtype=torch.long)
    )
    query = torch.utils.data.TensorDataset(
        torch.as_tensor(Xq), torch.as_tensor(yq, dtype=torch.long)
    )

    def fit():
        torch.manual_seed(0)
        analyzer.fit_all_factors(
            "ekfac",
            dataset=train,
            per_device_batch_size=len(train),
            factor_args=FactorArguments(strategy="ekfac"),
            overwrite_output_dir=True,
        )

    def score():
        analyzer.compute_pairwise_scores(
            "scores",
            factors_name="ekfac",
            query_dataset=query,
            train_dataset=train,
            per_device_query_batch_size=len(query),
            per_device_train_batch_size=len(train),
            score_args=ScoreArguments(damping_factor=lam),
            overwrite_output_dir=True,
        )
        return analyzer.load_pairwise_scores("scores")["all_modules"].double().numpy()

    return fit, score


# ---------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------


def fit_backends(adapter, lam):
    """The backends of the study, fitted with damping ``lam``."""
    backends = {
        "block GGN": BlockGGNCurvature(),
        "block GGN (per tensor)": BlockGGNCurvature(blocks="tensor"),
        "EK-FAC type2": EKFACCurvature(fisher="type2"),
        "K-FAC type2": KFACCurvature(fisher="type2"),
        "K-FAC type2 heuristic": KFACCurvature(
            fisher="type2", damping_mode="heuristic"
        ),
    }
    seconds = {}
    for name, b in backends.items():
        t0 = time.perf_counter()
        b.fit(adapter, damping=lam)
        seconds[name] = time.perf_counter() - t0
    return backends, seconds


def mc_eigenvalues(adapter, basis, n_samples, seed):
    """EK-FAC's ``Lambda`` from sampled labels, in ``basis``'s eigenbasis."""
    layers = [f.layer for f in basis.factors_]
    lam = [np.zeros((ly.n_out, ly.n_in)) for ly in layers]
    stats = adapter.layer_statistics(
        layers, fisher="mc", n_samples=n_samples, random_state=seed
    )
    for batch in stats:
        for L, f, (a, ds) in zip(lam, basis.factors_, batch, strict=True):
            L += np.sum((ds @ f.Q_S) ** 2, axis=1).T @ (a @ f.Q_A) ** 2
    return [L / adapter.n_train for L in lam]


def corr_rows(S, R):
    return float(np.mean([np.corrcoef(s, r)[0, 1] for s, r in zip(S, R, strict=True)]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--damping", type=float, nargs="+", default=[1e-4, 1e-3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-kronfluence", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.subsets, args.repeats = 3, 6, 1
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        run(args)


def run(args):
    clock = time.perf_counter()
    Xtr, Xval, ytr, yval = load()
    torch.manual_seed(42)
    net = make_net(args.epochs).fit(Xtr, ytr)
    acc = (net.predict(Xtr) == ytr).mean(), (net.predict(Xval) == yval).mean()
    scorer = InfluenceScorer(FrozenEstimator(net), curvature="identity").fit(Xtr, ytr)
    adapter = scorer.adapter_
    p, n = adapter.n_params, adapter.n_train
    print(
        f"digits MLP 64-64-32-10 GELU: p={p}, n_train={n}, n_val={len(yval)}, "
        f"{args.epochs} epochs, train/val accuracy {acc[0]:.3f}/{acc[1]:.3f}"
    )

    t0 = time.perf_counter()
    truth = lds_ground_truth(
        scorer,
        Xval,
        yval,
        alpha=args.alpha,
        n_subsets=args.subsets,
        n_seeds=args.seeds,
        random_state=0,
    )
    print(
        f"LDS ground truth: {args.subsets} subsets x {args.seeds} seed(s), "
        f"alpha={args.alpha}, cold retrains: {time.perf_counter() - t0:.0f} s"
    )

    Gtr = adapter.train_grads()  # (n, p)
    V = adapter.loss_grads(Xval, yval).T  # (p, n_val)
    t0 = time.perf_counter()
    H = adapter.hessian_matrix()
    t_h = time.perf_counter() - t0
    t0 = time.perf_counter()
    G = adapter.ggn_matrix()
    t_g = time.perf_counter() - t0
    inv_H, inv_G = EigenInverse(H), EigenInverse(G)
    print(
        f"dense H {t_h:.0f} s, GGN {t_g:.0f} s; H eigenvalues in "
        f"[{inv_H.w[0]:.2e}, {inv_H.w[-1]:.2e}], {np.sum(inv_H.w < 0)} negative; "
        f"GGN mean eigenvalue {inv_G.w.mean():.2e}"
    )

    kron = None
    if not args.no_kronfluence:
        try:
            import kronfluence  # noqa: F401

            kron = True
        except ImportError:
            print("kronfluence not installed: its rows are skipped (make bench).")

    args.dense_seconds = {"H": t_h, "GGN": t_g}
    for lam in args.damping:
        study(
            args,
            adapter,
            net,
            Xtr,
            ytr,
            Xval,
            yval,
            Gtr,
            V,
            H,
            G,
            inv_H,
            inv_G,
            truth,
            lam,
            kron,
        )
    print(f"\ntotal {time.perf_counter() - clock:.0f} s")


def lds_cell(S, truth):
    score, (lo, hi) = lds_from_scores(
        S, truth, confidence_level=0.95, n_resamples=1000, random_state=0
    )
    return score, lo, hi


def study(
    args,
    adapter,
    net,
    Xtr,
    ytr,
    Xval,
    yval,
    Gtr,
    V,
    H,
    G,
    inv_H,
    inv_G,
    truth,
    lam,
    kron,
):
    p = adapter.n_params
    backends, fit_seconds = fit_backends(adapter, lam)
    fit_seconds.update(args.dense_seconds)
    fit_seconds["(c) K-FAC"] = fit_seconds["K-FAC type2"]
    kfac, ekfac = backends["K-FAC type2"], backends["EK-FAC type2"]
    block = backends["block GGN"]
    Cb = block.curvature_matrix()
    # One eigenbasis Q (K-FAC's, type-2 factors) and three eigenvalue choices
    exact_d = [
        exact_diagonal(Cb[np.ix_(f.layer.index, f.layer.index)], f)
        for f in kfac.factors_
    ]
    check = max(
        rel(fe.eigenvalues, d) for fe, d in zip(ekfac.factors_, exact_d, strict=True)
    )
    mc_d = {k: mc_eigenvalues(adapter, kfac, k, 0) for k in (1, 100)}

    def in_basis(d):
        return eigenbasis_dense(kfac, d, p), eigenbasis_solve(kfac, d, V, lam)

    chain = [
        ("H", H, inv_H.solve(V, lam)),
        ("GGN", G, inv_G.solve(V, lam)),
        ("block GGN", Cb, block.solve(V)),
        ("(a) EK-FAC exact diag", *in_basis(exact_d)),
        ("(b) EK-FAC MC diag", *in_basis(mc_d[1])),
        ("(c) K-FAC", kfac.curvature_matrix(), kfac.solve(V)),
        ("identity", None, V / (1.0 + lam)),
    ]
    extra = [
        (
            "block GGN (per tensor)",
            2,
            *dense_and_solve(backends, "block GGN (per tensor)", V),
        ),
        ("(b') EK-FAC MC diag x100", 3, *in_basis(mc_d[100])),
        (
            "K-FAC type2 heuristic",
            5,
            *dense_and_solve(backends, "K-FAC type2 heuristic", V),
        ),
    ]
    print(f"\n## damping lam = {lam:g}, LDS alpha = {args.alpha}\n")
    print(
        "Basis of (a)-(c): K-FAC's, from type-2 factors; (a) is diag(Q^T G_l Q) "
        "from the dense block GGN (EKFACCurvature(fisher='type2') gives the same, "
        f"max relative difference {check:.1e}); (b) one sampled label per row.\n"
    )
    print(
        f"{'curvature':32} {'LDS':>7} {'95% CI':>17} {'dC prev':>8} {'dC GGN':>8} "
        f"{'dIHVP prev':>10} {'dIHVP GGN':>10} {'r(H)':>6} {'fit s':>6}"
    )
    ref = {"G": G, "X_G": chain[1][2], "S_H": chain[0][2].T @ Gtr.T}
    prev = None
    for name, C, X in chain:
        print_row(name, C, X, prev, ref, Gtr, truth, fit_seconds)
        prev = (C, X)
    print("-- off the chain ('prev' = the chain row named in brackets):")
    for name, base, C, X in extra:
        label = f"{name} [{chain[base][0].split()[0]}]"
        seconds = {label: fit_seconds.get(name, float("nan"))}
        print_row(label, C, X, chain[base][1:], ref, Gtr, truth, seconds)
    eigenvalue_step(kfac, exact_d, mc_d, Cb)
    mc_backends(adapter, kfac, V, Gtr, truth, lam)
    if kron:
        S_sk = EKFACCurvature(random_state=0).fit(adapter, damping=lam).solve(V)
        compare_kronfluence(
            args, adapter, net, Xtr, ytr, Xval, yval, lam, truth, S_sk.T @ Gtr.T
        )


def dense_and_solve(backends, name, V):
    return backends[name].curvature_matrix(), backends[name].solve(V)


def mc_backends(adapter, kfac_type2, V, Gtr, truth, lam):
    """The default backends (sampled labels): LDS over seeds, and the trace of
    their K-FAC factors relative to the type-2 ones."""
    print(
        "\nBackends with sampled labels (fisher='mc', the kronfluence/curvlinops "
        "default): LDS for seeds 0/1/2, trace(S (x) A) / type-2's per layer."
    )
    for cls in (EKFACCurvature, KFACCurvature):
        for k in (1, 10, 100):
            scores, traces = [], []
            for seed in range(3):
                b = cls(n_samples=k, random_state=seed).fit(adapter, damping=lam)
                scores.append(lds_from_scores(b.solve(V).T @ Gtr.T, truth))
                traces.append(
                    [
                        f.eig_S.sum() * f.eig_A.sum() / (t.eig_S.sum() * t.eig_A.sum())
                        for f, t in zip(b.factors_, kfac_type2.factors_, strict=True)
                    ]
                )
            lds_txt = "/".join(f"{x:.3f}" for x in scores)
            tr_txt = "  ".join(
                "/".join(f"{t:.3g}" for t in layer)
                for layer in zip(*traces, strict=True)
            )
            print(f"{cls.__name__:15} n_samples={k:<4} LDS {lds_txt}  trace {tr_txt}")


def print_row(name, C, X, prev, ref, Gtr, truth, fit_seconds):
    """One line: LDS with its interval, distances, correlation with H's scores."""
    nan = float("nan")
    S = X.T @ Gtr.T  # (n_val, n_train), skinfluence orientation
    score, lo, hi = lds_cell(S, truth)
    dC_prev = rel(C, prev[0]) if prev and C is not None and prev[0] is not None else nan
    dC_G = rel(C, ref["G"]) if C is not None else nan
    dX_prev = rel(X, prev[1]) if prev else nan
    print(
        f"{name:32} {score:7.4f} [{lo:7.4f}, {hi:7.4f}] {dC_prev:8.3f} {dC_G:8.3f} "
        f"{dX_prev:10.3f} {rel(X, ref['X_G']):10.3f} {corr_rows(S, ref['S_H']):6.3f} "
        f"{fit_seconds.get(name, nan):6.2f}"
    )


def eigenvalue_step(kfac, exact_d, mc_d, Cb):
    """Frobenius errors in the shared K-FAC eigenbasis, per layer."""
    print(
        "\nPer layer, in the shared eigenbasis: 'basis' is the off-diagonal mass "
        "of Q^T G_l Q relative to ||G_l|| (what no diagonal there captures); the "
        "others are relative errors of the eigenvalues to the exact diagonal."
    )
    print(f"{'layer':6} {'basis':>7} {'MC x1':>7} {'MC x100':>8} {'K-FAC':>7}")
    for f, d, d1, d100 in zip(kfac.factors_, exact_d, mc_d[1], mc_d[100], strict=True):
        Gl = Cb[np.ix_(f.layer.index, f.layer.index)]
        off = np.sqrt(max(np.linalg.norm(Gl) ** 2 - np.linalg.norm(d) ** 2, 0.0))
        print(
            f"{f.layer.name:6} {off / np.linalg.norm(Gl):7.3f} {rel(d1, d):7.3f} "
            f"{rel(d100, d):8.3f} {rel(f.eigenvalues, d):7.3f}"
        )


def compare_kronfluence(args, adapter, net, Xtr, ytr, Xval, yval, lam, truth, S_sk):
    def sk_fit():
        return EKFACCurvature(random_state=0).fit(adapter, damping=lam)

    scorer = InfluenceScorer(
        FrozenEstimator(net), curvature=EKFACCurvature(random_state=0), damping=lam
    ).fit(Xtr, ytr)

    def sk_score():
        return scorer.influence(Xval, yval)

    with tempfile.TemporaryDirectory() as workdir:
        kf_fit, kf_score = kronfluence_runs(
            net.module_, Xtr, ytr, Xval, yval, lam, workdir
        )
        rows = {}
        for label, fit, score in (
            ("skinfluence EK-FAC (float64)", sk_fit, sk_score),
            ("kronfluence EK-FAC (float32)", kf_fit, kf_score),
        ):
            _, t_fit = best_seconds(fit, args.repeats)
            S, t_score = best_seconds(score, args.repeats)
            rows[label] = (
                t_fit,
                t_score,
                S,
                peak_memory_mb(fit),
                peak_memory_mb(score),
            )
    print(f"\nEK-FAC, skinfluence vs kronfluence (best of {args.repeats}, 1 thread):")
    print(
        f"{'':30} {'fit s':>7} {'score s':>8} {'fit MB':>7} {'score MB':>8} "
        f"{'LDS':>7} {'r(skinfl.)':>10}"
    )
    for label, (t_fit, t_score, S, m_fit, m_score) in rows.items():
        score = lds_from_scores(S, truth)
        print(
            f"{label:30} {t_fit:7.3f} {t_score:8.3f} {m_fit:7.0f} {m_score:8.0f} "
            f"{score:7.4f} {corr_rows(S, S_sk):10.3f}"
        )
    (f_sk, s_sk, *_), (f_kf, s_kf, *_) = rows.values()
    print(
        f"ratio kronfluence / skinfluence: fit {f_kf / f_sk:.2f}x, "
        f"score {s_kf / s_sk:.2f}x"
    )


if __name__ == "__main__":
    main()
