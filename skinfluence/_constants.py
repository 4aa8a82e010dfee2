"""Named constants shared across skinfluence (one place, so a grep finds them)."""

#: Memory budget, in bytes, for one block of gradients or scores.  Blocked
#: computations choose their chunk sizes so that no temporary exceeds it.
MEMORY_BUDGET_BYTES = 256 * 2**20

#: ``curvature="auto"`` picks the dense ``exact`` backend up to this many
#: parameters and the matrix-free ``cg`` backend above.
AUTO_EXACT_MAX_PARAMS = 5_000

#: ``grad_norm_`` above this fraction of the root-mean-square per-sample
#: gradient norm triggers a warning that the model is not at an optimum.
STATIONARITY_RTOL = 1e-2

#: Tolerance and iteration cap used when refitting scikit-learn models for
#: actual leave-one-out ground truth.
RETRAIN_TOL = 1e-10
RETRAIN_MAX_ITER = 10_000
