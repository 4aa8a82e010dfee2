"""Noisy-label detection and relabeling against cleanlab, on the same splits.

Digits, 60/20/20 split (train / trusted validation / test, seed 0), training
labels flipped symmetrically at 20% and 40%.  Models: multinomial logistic
regression (C=0.1); a 64-64-10 tanh MLP trained to memorise the noisy labels
(full-batch L-BFGS, no weight decay; influence with ``damping="auto"`` on the
Gauss-Newton matrix); and the same MLP fitted by skorch with Adam (300
epochs, batch 64) with the ``TracInCheckpoints`` callback (every 30 epochs),
the only model with a trajectory for TracIn.

VM / FVM fine-tune from the fitted model on the trusted validation set with
the default ``Finetuner`` (2000 steps of SGD, lr 0.01, momentum 0.9, batch
64; FVM: LPF-SGD radius 5e-2, or SAM with radius 5e-2), then score with the
damped Gauss-Newton matrix of the validation loss.

For each method: detection ROC AUC and AUPRC (noisy = positive, higher score =
more suspicious), relabel top-1 accuracy on the flipped points where the method
suggests labels, and seconds.  The relabelers also report the test accuracy
(the held-out 20 %) of the model refitted on their labels
(``Relabeler.score``), next to the model fitted on the noisy labels; they
run alone with ``--relabel-only`` (no detectors, no cleanlab).  cleanlab 2.9
is the side-by-side reference:
``get_label_quality_scores`` on 5-fold out-of-fold probabilities of the same
model (the ranking), and ``find_label_issues`` (its boolean flags, scored as
0/1), with the out-of-fold argmax as its suggested label.

Run: ``python benchmarks/noisy_labels.py`` (needs ``pip install cleanlab``),
or ``python benchmarks/noisy_labels.py --relabel-only [--lr-only]``.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict, train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier
from threadpoolctl import threadpool_limits

from skinfluence import (
    Finetuner,
    NoisyLabelDetector,
    Relabeler,
    TorchClassifier,
    TracInCheckpoints,
)
from skinfluence.datasets import inject_label_noise
from skinfluence.evaluation import detection_report, relabel_accuracy


def split():
    X, y = load_digits(return_X_y=True)
    Xtr, Xrest, ytr, yrest = train_test_split(
        X, y, test_size=0.4, random_state=0, stratify=y
    )
    Xval, Xte, yval, yte = train_test_split(
        Xrest, yrest, test_size=0.5, random_state=0, stratify=yrest
    )
    scaler = StandardScaler().fit(Xtr)
    return (
        scaler.transform(Xtr),
        ytr,
        scaler.transform(Xval),
        yval,
        scaler.transform(Xte),
        yte,
    )


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10)
    )


def models():
    skorch_net = NeuralNetClassifier(
        _mlp(),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=3e-3,
        max_epochs=300,
        batch_size=64,
        train_split=None,
        callbacks=[("tracin", TracInCheckpoints(every=30))],
        verbose=0,
    )
    return {
        "digits LR": (LogisticRegression(C=0.1, max_iter=3000), 0.0, "exact"),
        "digits MLP (memorising)": (
            TorchClassifier(_mlp(), random_state=0, max_iter=1000),
            "auto",
            "ggn",
        ),
        "digits MLP (skorch, Adam, memorising)": (skorch_net, "auto", "ggn"),
    }


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(
    model,
    damping,
    curvature,
    X,
    y_noisy,
    is_noisy,
    y_true,
    Xval,
    yval,
    Xte,
    yte,
    relabel_only=False,
):
    rows = []
    kw = {"curvature": curvature, "damping": damping}
    if isinstance(model, NeuralNetClassifier):
        X = X.astype(np.float32)
        Xval = Xval.astype(np.float32)
        Xte = Xte.astype(np.float32)
    noisy_fit, sec = timed(lambda: clone(model).fit(X, y_noisy))
    rows.append(
        ("model on the noisy labels", None, None, noisy_fit.score(Xte, yte), sec)
    )
    if not relabel_only:
        rows.extend(_detectors(model, kw, X, y_noisy, is_noisy, Xval, yval))
    for label, method in [
        ("Relabeler (label influence)", "label_influence"),
        ("Relabeler (VM, the default)", "vm"),
        ("Relabeler (FVM)", "fvm"),
    ]:
        rel, sec = timed(
            lambda method=method: Relabeler(
                model, method=method, max_fraction=0.5, random_state=0, **kw
            ).fit(X, y_noisy, X_val=Xval, y_val=yval)
        )
        acc = relabel_accuracy(y_true, rel.suggested_labels_, is_noisy)
        rows.append((label, None, acc, rel.score(Xte, yte), sec))
    if not relabel_only:
        rows.extend(_cleanlab(model, X, y_noisy, is_noisy, y_true))
    return rows


def _detectors(model, kw, X, y_noisy, is_noisy, Xval, yval):
    rows = []
    methods = {
        "self_influence": ("self_influence", None),
        "loss": ("loss", None),
        "validation_influence": ("validation_influence", None),
        "VM": ("vm", Finetuner(random_state=0)),
        "FVM (LPF-SGD)": ("fvm", Finetuner(random_state=0)),
        "FVM (SAM)": ("fvm", Finetuner(flatness="sam", random_state=0)),
    }
    if isinstance(model, NeuralNetClassifier):
        methods["TracIn (10 checkpoints)"] = ("tracin", None)
    for label, (method, finetune) in methods.items():
        det, sec = timed(
            lambda method=method, finetune=finetune: NoisyLabelDetector(
                model, method=method, finetune=finetune, **kw
            ).fit(X, y_noisy, X_val=Xval, y_val=yval)
        )
        rows.append((label, detection_report(is_noisy, det.scores_), None, None, sec))
    return rows


def _cleanlab(model, X, y_noisy, is_noisy, y_true):
    rows = []
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    def cleanlab_scores():
        proba = cross_val_predict(
            clone(model), X, y_noisy, cv=5, method="predict_proba"
        )
        quality = get_label_quality_scores(y_noisy, proba)
        flags = find_label_issues(y_noisy, proba)
        return proba, quality, flags

    (proba, quality, flags), sec = timed(cleanlab_scores)
    rows.append(
        (
            "cleanlab quality scores",
            detection_report(is_noisy, -quality),
            None,
            None,
            sec,
        )
    )
    rows.append(
        (
            "cleanlab find_label_issues",
            detection_report(is_noisy, flags.astype(float)),
            relabel_accuracy(y_true, np.argmax(proba, axis=1), is_noisy),
            None,
            sec,
        )
    )
    return rows


def main(argv=()):
    relabel_only = "--relabel-only" in argv
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    X, y, Xval, yval, Xte, yte = split()
    chosen = models()
    if "--lr-only" in argv:
        chosen = {"digits LR": chosen["digits LR"]}
    with threadpool_limits(limits=1):
        for name, (model, damping, curvature) in chosen.items():
            for rate in (0.2, 0.4):
                y_noisy, is_noisy = inject_label_noise(y, rate, random_state=0)
                print(f"\n## {name}, {int(rate * 100)}% symmetric noise, n={len(y)}")
                print(
                    f"{'method':30} {'ROC AUC':>8} {'AUPRC':>7} {'relabel':>8} "
                    f"{'test acc':>8} {'s':>7}"
                )
                for label, rep, acc, test, sec in run(
                    model,
                    damping,
                    curvature,
                    X,
                    y_noisy,
                    is_noisy,
                    y,
                    Xval,
                    yval,
                    Xte,
                    yte,
                    relabel_only=relabel_only,
                ):
                    auc = f"{rep['roc_auc']:.3f}" if rep else "-"
                    ap = f"{rep['average_precision']:.3f}" if rep else "-"
                    rel = f"{acc:.3f}" if acc is not None else "-"
                    te = f"{test:.3f}" if test is not None else "-"
                    print(f"{label:30} {auc:>8} {ap:>7} {rel:>8} {te:>8} {sec:7.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
