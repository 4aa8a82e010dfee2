"""Fine-tuning a fitted model on other data: the validation minima of VM/FVM.

VM and FVM (Ye et al., ICML 2025) score training points at parameters that
minimise the loss of a trusted validation set, found by continuing training
from the fitted model on that set: plain minibatch SGD for VM, and a
flatness-seeking variant for FVM, either LPF-SGD (low-pass-filter SGD with
one noise sample: the gradient is taken at weights perturbed by Gaussian
noise scaled to each weight row's norm) or SAM (the gradient at the
worst-case point of a ball of radius ``radius``).

The loop is written once in numpy on top of two adapter primitives,
``batch_objective_grad(theta, rows)`` and ``param_blocks()``, so the same
optimiser serves closed-form linear models and torch networks.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ..utils._progress import progress
from ..utils._sklearn_compat import Interval, StrOptions
from ._contract import Reparametrizable, require


class Finetuner(BaseEstimator):
    """Fine-tune a fitted model on a (validation) set from its parameters.

    Used by :class:`~skinfluence.NoisyLabelDetector` and
    :class:`~skinfluence.Relabeler` with ``method="vm"`` (plain SGD to a
    validation minimum) and ``method="fvm"`` (a flat validation minimum).
    Being an estimator, its parameters are tuned through the owner, e.g.
    ``GridSearchCV`` over ``cleaner__finetune__radius``.

    Parameters
    ----------
    n_steps : int, default=2000
        Minibatch steps.  On the memorising digits MLP of
        ``benchmarks/noisy_labels.py`` (radius 5e-3) 500 steps left the
        validation loss far from its minimum and VM/FVM weaker (AUC 0.88/0.90
        vs 0.90/0.92 with 2000).
    lr : float, default=0.01
        Learning rate of SGD with momentum.
    momentum : float, default=0.9
        Heavy-ball momentum.
    batch_size : int, default=64
        Rows per step (the whole set when it is smaller).
    flatness : {"lpf", "sam"}, default="lpf"
        How FVM seeks flatness (``method="vm"`` ignores it): ``"lpf"``:
        LPF-SGD with one noise sample, the gradient at ``theta + eps`` with
        ``eps`` Gaussian of standard deviation ``radius * ||w_row||`` per row
        of each weight matrix (``radius * ||b||`` for vectors); ``"sam"``:
        the gradient at ``theta + radius * g / ||g||``.
    radius : float, default=5e-2
        LPF-SGD's relative noise scale (gamma) or SAM's radius (rho).  The
        FVM paper does not state its value (LPF-SGD's own default is 1e-3).
        On the memorising digits MLP of ``benchmarks/noisy_labels.py`` (20%
        flips) FVM's detection AUC was 0.92 / 0.97 / 0.99 at 5e-3 / 2e-2 /
        5e-2 (2000 steps): the default was picked on that benchmark's own
        data, at the edge of the range tried; tune it.
    random_state : int, RandomState or None, default=None
        Seeds the batch order and the LPF noise.

    Notes
    -----
    The objective minimised is the model's own on the new data, penalty
    included (see the adapters' ``with_data``).  Starting from the fitted
    parameters is an assumption: the paper does not say where its
    fine-tuning starts.

    References
    ----------
    Ye et al. "Towards Robust Influence Functions with Flat Validation
    Minima", ICML 2025 (arXiv:2505.19097).  Bisla et al. "Low-Pass Filtering
    SGD for Recovering Flat Optima in the Deep Learning Optimization
    Landscape", AISTATS 2022.  Foret et al. "Sharpness-Aware Minimization",
    ICLR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from skinfluence import Finetuner, NoisyLabelDetector, TorchClassifier
    >>> from skinfluence.datasets import inject_label_noise
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> X = X / 16.0
    >>> y_noisy, flipped = inject_label_noise(y[:200], 0.1, random_state=0)
    >>> net = TorchClassifier(
    ...     torch.nn.Sequential(
    ...         torch.nn.Linear(64, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ...     ),
    ...     random_state=0,
    ... )
    >>> detector = NoisyLabelDetector(
    ...     net,
    ...     method="fvm",
    ...     damping="auto",
    ...     finetune=Finetuner(n_steps=100, random_state=0),  # default: 2000
    ... ).fit(X[:200], y_noisy, X_val=X[200:300], y_val=y[200:300])
    >>> info = detector.finetune_info_  # the validation loss went down
    >>> bool(info["loss_after"] < info["loss_before"])
    True
    """

    _parameter_constraints: dict = {
        "n_steps": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "flatness": [StrOptions({"lpf", "sam"})],
        "radius": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        n_steps=2000,
        lr=0.01,
        momentum=0.9,
        batch_size=64,
        flatness="lpf",
        radius=5e-2,
        random_state=None,
    ):
        self.n_steps = n_steps
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.flatness = flatness
        self.radius = radius
        self.random_state = random_state

    def run(
        self,
        adapter: Any,
        X: ArrayLike,
        y: ArrayLike,
        *,
        flat: bool,
        random_state: Any = None,
        verbose: int = 0,
    ) -> tuple[Any, dict]:
        """Fine-tune ``adapter``'s model on ``(X, y)``.

        Parameters
        ----------
        adapter : ModelAdapter
            A fitted model's adapter with the
            :class:`~skinfluence.models.Reparametrizable` capability
            (``with_data``, ``with_params``, ``batch_objective_grad``,
            ``param_blocks``).
        X, y : array-like
            The data to fine-tune on (inputs as the whole model takes them).
        flat : bool
            Seek a flat minimum (FVM) rather than plain SGD (VM).
        random_state : int, RandomState or None, default=None
            Used when the finetuner's own ``random_state`` is None.
        verbose : int, default=0
            Progress bar over steps when positive.

        Returns
        -------
        adapter : ModelAdapter
            The fine-tuned model with ``(X, y)`` as its training set.
        info : dict
            ``loss_before`` and ``loss_after``, the mean loss on ``(X, y)``
            before and after, and ``grad_norm``, the final objective-gradient
            norm.
        """
        self._validate_params()
        require(
            adapter,
            Reparametrizable,
            purpose="Fine-tuning (method='vm' or 'fvm')",
            instead="use method='self_influence'",
        )
        tuned = adapter.with_data(X, y)
        seed = self.random_state if self.random_state is not None else random_state
        rng = check_random_state(seed)
        # noise from its own stream: VM and FVM see the same batch order
        noise_rng = np.random.RandomState(rng.randint(2**31 - 1))
        m = tuned.n_train
        b = min(self.batch_size, m)
        theta = tuned.params()
        loss_before = float(np.mean(tuned.loss(X, y)))
        velocity = np.zeros_like(theta)
        blocks = tuned.param_blocks()
        order = np.empty(0, dtype=np.intp)
        for _ in progress(range(self.n_steps), desc="fine-tune", verbose=verbose):
            if len(order) < b:
                order = np.concatenate([order, rng.permutation(m)])
            rows, order = order[:b], order[b:]
            at = theta
            if flat and self.flatness == "lpf":
                at = theta + _lpf_noise(theta, blocks, self.radius, noise_rng)
            elif flat:
                g0 = tuned.batch_objective_grad(theta, rows)
                at = theta + self.radius * g0 / max(np.linalg.norm(g0), 1e-12)
            g = tuned.batch_objective_grad(at, rows)
            velocity = self.momentum * velocity + g
            theta = theta - self.lr * velocity
            if not np.all(np.isfinite(theta)):
                raise ValueError(
                    f"Fine-tuning diverged (non-finite parameters) with "
                    f"lr={self.lr}; lower the finetuner's lr (e.g. "
                    f"Finetuner(lr={self.lr / 10:g}))."
                )
        tuned = tuned.with_params(theta)
        with np.errstate(all="ignore"):
            full = tuned.batch_objective_grad(theta, slice(None))
            info = {
                "loss_before": loss_before,
                "loss_after": float(np.mean(tuned.loss(X, y))),
                "grad_norm": float(np.linalg.norm(full)),
            }
        # fine-tuning from the training optimum should lower the validation
        # loss; a run that multiplied it (or overflowed) diverged, and scores
        # at that point would look finite but mean nothing
        after = info["loss_after"]
        if not (np.isfinite(after) and np.isfinite(info["grad_norm"])) or (
            after > 2 * loss_before + 1e-12
        ):
            raise ValueError(
                f"Fine-tuning diverged: the mean loss on the data it was tuned on "
                f"went from {loss_before:.3g} to {after:.3g} (final gradient norm "
                f"{info['grad_norm']:.3g}) with lr={self.lr}; lower the "
                f"finetuner's lr (e.g. Finetuner(lr={self.lr / 10:g})) or its "
                "momentum."
            )
        return tuned, info


def _lpf_noise(
    theta: NDArray, blocks: list, radius: float, rng: np.random.RandomState
) -> NDArray:
    """LPF-SGD's perturbation: per weight row (filter), std ``radius * ||row||``."""
    eps = np.empty_like(theta)
    for sl, shape in blocks:
        w = theta[sl].reshape(shape[0], -1) if len(shape) >= 2 else theta[sl][None]
        std = radius * np.linalg.norm(w, axis=1, keepdims=True)
        eps[sl] = (rng.standard_normal(w.shape) * std).ravel()
    return eps
