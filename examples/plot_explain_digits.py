"""
======================================================
Explaining a digit: its most helpful and harmful rows
======================================================

A logistic regression on scikit-learn's 8x8 digits gets a test digit wrong.
:meth:`~skinfluence.InfluenceScorer.explain` lists, without forming the
``(n_query, n_train)`` influence matrix, the five training digits that most
support the query's true label (removing them would raise its loss) and the
five that most oppose it; :class:`~skinfluence.display.ExplanationDisplay`
draws them as thumbnails.  :class:`~skinfluence.display.FidelityDisplay`
then checks the scores against actual leave-one-out refits, and
:class:`~skinfluence.display.LabelIssuesDisplay` shows which training labels
a :class:`~skinfluence.NoisyLabelDetector` finds wrong after 5 % of them
are flipped.
"""

# %%
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceScorer, NoisyLabelDetector
from skinfluence.datasets import inject_label_noise
from skinfluence.display import (
    ExplanationDisplay,
    FidelityDisplay,
    LabelIssuesDisplay,
)

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, y_train, X_test, y_test = X[:1200], y[:1200], X[1200:], y[1200:]
model = LogisticRegression(C=1.0, tol=1e-8, max_iter=5000)
scorer = InfluenceScorer(model).fit(X_train, y_train)

# %%
# The first misclassified test digit, and the rows behind its label.
wrong = np.flatnonzero(scorer.predict(X_test) != y_test)
j = int(wrong[0])
why = scorer.explain(X_test[[j]], y_test[[j]], k=5)
print(f"test digit {j}: label {y_test[j]}, predicted {scorer.predict(X_test[[j]])[0]}")
print("helpful rows", why.helpful_indices[0], "labels", y_train[why.helpful_indices[0]])
print("harmful rows", why.harmful_indices[0], "labels", y_train[why.harmful_indices[0]])

disp = ExplanationDisplay.from_estimator(
    scorer,
    X_test[[j]],
    y_test[[j]],
    X_train=X_train,
    y_train=y_train,
    k=5,
    image_shape=(8, 8),
)

# %%
# "Helpful" means the same thing for the predicted class: with
# ``target="prediction"`` (no label needed) the helpful rows are those whose
# removal would lower the probability of the (wrong) predicted class.
behind = scorer.explain(X_test[[j]], target="prediction", k=5)
print("rows behind the prediction", behind.helpful_indices[0])
print("their labels", y_train[behind.helpful_indices[0]])

# %%
# Fidelity: the predicted loss change of the 15 most influential rows
# against 15 actual refits.
fid = FidelityDisplay.from_estimator(scorer, X_test[[j]], y_test[[j]], n_rows=15)
print(f"Pearson {fid.pearson_:.3f}, Spearman {fid.spearman_:.3f}")

# %%
# Which labels are wrong: flip 5 % of the training labels, flag as many
# rows, and show the most suspicious ones with the label they were given.
y_noisy, flipped = inject_label_noise(y_train, 0.05, random_state=0)
detector = NoisyLabelDetector(model, contamination=0.05).fit(X_train, y_noisy)
print(f"flagged rows that were flipped: {flipped[detector.noisy_mask_].mean():.0%}")
issues = LabelIssuesDisplay.from_estimator(
    detector, X_train, y_noisy, max_rows=10, image_shape=(8, 8)
)

out = Path("build") / "explain_digit.png"
out.parent.mkdir(exist_ok=True)
disp.figure_.savefig(out, dpi=130, bbox_inches="tight")
