"""
========================================================
Which training points made this prediction? (quickstart)
========================================================

Fit an :class:`~skinfluence.InfluenceScorer` around a logistic regression on
the breast-cancer data, pick a misclassified test point, and list the five
training points that helped it most and the five that hurt it most.  Then
check the predictions against actual leave-one-out retraining.

Sign convention: ``S[j, i] > 0`` means training point ``i`` *helps* test
point ``j`` (removing ``i`` would raise ``j``'s loss); removing ``i`` changes
the loss by about ``S[j, i] / n_train``.
"""

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceScorer
from skinfluence.evaluation import loo_change, loo_correlation

data = load_breast_cancer()
X_train, X_test, y_train, y_test = train_test_split(
    data.data, data.target, test_size=0.3, random_state=0, stratify=data.target
)
names = [str(name) for name in data.target_names]

# %%
# Fit: the scaler is treated as fixed preprocessing, the logistic regression
# is differentiated exactly (closed-form Hessian, Cholesky).
model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
scorer = InfluenceScorer(model).fit(X_train, y_train)
print(f"test accuracy {scorer.score(X_test, y_test):.3f}")

# %%
# A misclassified test point (the most confidently wrong one).
proba = scorer.predict_proba(X_test)
wrong = np.flatnonzero(scorer.predict(X_test) != y_test)
j = wrong[np.argmin(proba[wrong, y_test[wrong]])]
print(
    f"test point {j}: true {names[y_test[j]]!r}, predicted "
    f"{names[1 - y_test[j]]!r} with p={proba[j].max():.2f}"
)

S = scorer.influence(X_test[j : j + 1], y_test[j : j + 1])[0]
n = scorer.n_train_
helpful, harmful = np.argsort(-S)[:5], np.argsort(S)[:5]
for title, rows in [("most helpful", helpful), ("most harmful", harmful)]:
    print(f"\n{title} training points (removal changes the test loss by):")
    for i in rows:
        print(
            f"  #{i:4d}  label {names[y_train[i]]!r:12}  "
            f"predicted change {S[i] / n:+.5f}"
        )

# %%
# Ground truth: retrain without each of these ten points and a random ten.
rng = np.random.default_rng(0)
idx = np.concatenate([helpful, harmful, rng.choice(n, 10, replace=False)])
actual = loo_change(scorer, X_test[j : j + 1], y_test[j : j + 1], idx)[0]
r = loo_correlation(S[idx] / n, actual)
print(f"\nPearson(predicted, actual LOO change) over {len(idx)} refits: {r:.3f}")

# %%
# Plot: every training point's predicted effect, and predicted vs actual.
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
order = np.argsort(S)
colors = np.where(y_train[order] == y_test[j], "tab:blue", "tab:red")
ax0.bar(np.arange(n), S[order] / n, color=colors, width=1.0)
ax0.axhline(0, color="k", lw=0.5)
ax0.set(
    title=f"Influence on test point {j} (blue: same label, red: other)",
    xlabel="training points, sorted",
    ylabel="predicted loss change on removal",
)
ax1.scatter(S[idx] / n, actual, c="k", s=15)
lim = np.abs(np.concatenate([S[idx] / n, actual])).max() * 1.1
ax1.plot([-lim, lim], [-lim, lim], "--", color="gray", lw=1)
ax1.set(
    title=f"Predicted vs actual leave-one-out (Pearson {r:.3f})",
    xlabel="predicted change (S / n)",
    ylabel="actual change (refit without the point)",
)
fig.tight_layout()
out = Path("build") / "quickstart_influence.png"
out.parent.mkdir(exist_ok=True)
fig.savefig(out, dpi=110)
print(f"\nplot saved to {out}")
