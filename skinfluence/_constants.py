"""Named constants shared across skinfluence (one place, so a grep finds them)."""

#: Memory budget, in bytes, for one block of gradients or scores.  Blocked
#: computations choose their chunk sizes so that no temporary exceeds it.
#: The default of ``InfluenceScorer(memory_budget=None)``; a budget the user
#: sets replaces both this and ``DENSE_MEMORY_BUDGET_BYTES``.
MEMORY_BUDGET_BYTES = 256 * 2**20

#: Memory budget, in bytes, for one dense ``p x p`` curvature matrix (the
#: ``"exact"`` and ``"ggn"`` backends, dense assembly of an operator).  Larger
#: ones are refused before anything is allocated, naming a matrix-free backend.
#: 4 x ``MEMORY_BUDGET_BYTES`` (1 GiB): about 11,500 parameters in float64.
DENSE_MEMORY_BUDGET_BYTES = 4 * MEMORY_BUDGET_BYTES

#: ``curvature="auto"`` picks the dense ``ggn`` backend for a network (a
#: non-convex objective) up to this many parameters and
#: ``CGCurvature(operator="ggn")`` above: the dense Gauss-Newton matrix is
#: assembled from ``p`` products.  Convex models take ``exact`` while its
#: dense factor fits the memory budget (see ``make_curvature``).
AUTO_EXACT_MAX_PARAMS = 5_000

#: ``grad_norm_`` above this fraction of the root-mean-square per-sample
#: gradient norm triggers a warning that the model is not at an optimum.
STATIONARITY_RTOL = 1e-2
#: ... and above this absolute value, so exact fits (every gradient ~ 0, e.g.
#: least squares on noise-free targets) are not flagged for rounding noise.
STATIONARITY_ATOL = 1e-8
#: ... and when one Newton step to the optimum, in the curvature norm, exceeds
#: this multiple of a typical leave-one-out parameter shift: the fit is then
#: farther from its optimum than removing a point moves it, so retraining
#: (to the optimum, or at the same tol) differs from the model mostly by the
#: unfinished optimisation.  Measured at scikit-learn's default tol=1e-4:
#: LogisticRegression(C=np.inf) on 8 breast-cancer features 1.9 (its scores
#: 4% off the optimum's), C=1 on all 30 features 0.5 (scores 0.9% off),
#: digits 2.5; at tol=1e-10, 2e-5.
NEWTON_STATIONARITY_RTOL = 1.0

#: Tolerance and iteration cap used when refitting scikit-learn models for
#: actual leave-one-out ground truth.
RETRAIN_TOL = 1e-10
RETRAIN_MAX_ITER = 10_000

#: ``damping="auto"``: this fraction of the curvature's mean eigenvalue
#: (``trace / n_params``).  1e-3 for exact-type solvers follows the
#: "Better Hessians Matter" code's relative damping; 0.1 for the empirical
#: Fisher follows DataInf's ``lambda = 0.1 * mean(g^2)``.
AUTO_DAMPING_SCALE = 1e-3
AUTO_DAMPING_SCALE_EF = 0.1

#: Probes for Hutchinson estimates of the Hessian diagonal when an adapter
#: has no closed form.
HUTCHINSON_PROBES = 100

#: LiSSA's ``scale="auto"``: this multiple of the largest Hessian eigenvalue.
#: Measured on digits logistic regression (depth 5000, batch 64): 1.5x
#: diverges with small batches, 10x-70x agree with exact at Pearson >= 0.99.
LISSA_AUTO_SCALE = 10.0

#: Probes of the sketched self-influence (``InfluenceScorer(sketch_probes=)``
#: default): with matrix-free curvature (CG) every training row's
#: ``g^T C^{-1} g`` comes from this many solves instead of one per row, each
#: value within a relative standard error ``sqrt(2 / k)`` (10 % at 200).
#: Measured (binary LR, n = 20,000, p = 51, one thread): 200 probes cost
#: ~0.6 s against ~90 s for one CG solve per row; Spearman 0.998 with exact.
SKETCH_PROBES = 200
