"""
=====================================================
Which training images a small CNN leans on (EK-FAC)
=====================================================

Train a small convolutional network on the 8 x 8 digits, images kept as
``(n, 1, 8, 8)``, with :class:`~skinfluence.TorchClassifier`; then score every
training image's influence on a misclassified test digit with
:class:`~skinfluence.InfluenceScorer` and ``curvature="ekfac"``: EK-FAC
factors the Gauss-Newton curvature of each ``nn.Conv2d`` and ``nn.Linear``
layer in a Kronecker eigenbasis (convolutions through their unfolded input
patches), so the fit is one pass over the data and each query a few small
matrix products.

A positive score means the training image *helps* the query (removing it
would raise the query's loss); a negative one means it *harms* it.  For a
misclassified digit the harmful images are typically those of the wrongly
predicted class that look like the query, and the helpful ones share its
true label.
"""

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skinfluence import InfluenceScorer, TorchClassifier

digits = load_digits()
X = (digits.images / 16.0)[:, None, :, :]  # (n, 1, 8, 8)
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, train_size=800, random_state=0, stratify=digits.target
)

torch.manual_seed(0)
cnn = torch.nn.Sequential(
    torch.nn.Conv2d(1, 8, kernel_size=3, padding=1),  # 8 x 8 x 8
    torch.nn.ReLU(),
    torch.nn.MaxPool2d(2),  # 8 x 4 x 4
    torch.nn.Flatten(),
    torch.nn.Linear(128, 10),
)
start = time.perf_counter()
clf = TorchClassifier(cnn, weight_decay=1e-3, tol=1e-4, random_state=0)
clf.fit(X_train, y_train)
print(
    f"CNN trained in {time.perf_counter() - start:.1f} s; "
    f"test accuracy {clf.score(X_test, y_test):.3f}"
)

# %%
# EK-FAC influence of all 800 training images on the misclassified test
# digits.  ``damping="auto"`` damps each layer by a tenth of its mean
# eigenvalue.
start = time.perf_counter()
scorer = InfluenceScorer(
    FrozenEstimator(clf), curvature="ekfac", damping="auto", random_state=0
).fit(X_train, y_train)
fit_s = time.perf_counter() - start
wrong = np.flatnonzero(clf.predict(X_test) != y_test)
start = time.perf_counter()
S = scorer.influence(X_test[wrong], y_test[wrong])  # (n_wrong, 800)
print(
    f"EK-FAC factors in {fit_s:.2f} s; influence of {S.shape[1]} training "
    f"images on {S.shape[0]} misclassified test digits in "
    f"{time.perf_counter() - start:.2f} s"
)

# %%
# The most helpful and the most harmful training images for one of them.
j = 0
query = wrong[j]
order = np.argsort(S[j])
helpful, harmful = order[::-1][:6], order[:6]
predicted = clf.predict(X_test[query : query + 1])[0]

fig, axes = plt.subplots(2, 7, figsize=(12, 4.8))
for row, (title, idx) in enumerate([("helpful", helpful), ("harmful", harmful)]):
    ax = axes[row, 0]
    ax.imshow(X_test[query, 0], cmap="gray_r")
    ax.set_title(f"query: true {y_test[query]}\npredicted {predicted}", fontsize=9)
    ax.axis("off")
    for ax, i in zip(axes[row, 1:], idx, strict=True):
        ax.imshow(X_train[i, 0], cmap="gray_r")
        ax.set_title(
            f"{title}\nlabel {y_train[i]}, {S[j, i]:+.2g}",
            fontsize=9,
            color="tab:green" if row == 0 else "tab:red",
        )
        ax.axis("off")
fig.suptitle("Training images that most help (top) and harm (bottom) the query")
fig.tight_layout()
out = Path("build") / "cnn_influence.png"
out.parent.mkdir(exist_ok=True)
fig.savefig(out, dpi=100)
print(f"plot saved to {out}")
print(
    f"labels of the 6 most harmful: {y_train[harmful].tolist()} "
    f"(predicted class {predicted}); of the 6 most helpful: "
    f"{y_train[helpful].tolist()} (true class {y_test[query]})"
)
