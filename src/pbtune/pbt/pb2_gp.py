"""PB2's model: a time-varying Gaussian process on scikit-learn, and its UCB acquisition.

Why a kernel class of our own: PB2 (Parker-Holder et al. 2020) models the reward change of an
interval as a function that drifts over training, with the TV-GP-UCB kernel of Bogunovic et al.
(2016): a squared exponential on the hyperparameters (and the context) times a decay
``(1 − ε)^{|t − t'|/2}`` in time, so older boundaries count less. scikit-learn's built-in kernels
act on every input column (there are no "active dimensions"), so a product of ``RBF`` and
``Matern(nu=0.5)`` would put the decay on the hyperparameters too; :class:`TimeVaryingRBF` applies
each factor to its own columns, with analytic gradients, and composes with sklearn's
``ConstantKernel`` (signal variance) and ``WhiteKernel`` (observation noise) so the regressor fits
every hyperparameter by maximum likelihood. The GP algebra itself is sklearn's.

Input rows are ``[t, context..., x...]``: ``t`` in perturbation intervals (not rescaled, so ``ε``
is a forgetting rate per interval), the context and ``x`` in [0, 1]. Everything random comes from
the caller's seed, so the same data and seed always give the same proposal.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.spatial.distance import cdist
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Hyperparameter, Kernel, WhiteKernel
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

N_CANDIDATES = 2000  # random points scored before the local refinement
N_REFINE = 3  # best candidates refined by L-BFGS-B


class TimeVaryingRBF(Kernel):
    """``(1 − ε)^{|t − t'|/2} · exp(−½ Σᵢ (zᵢ − z'ᵢ)² / ℓᵢ²)``: time in column 0, ``z`` the rest.

    One length scale per non-time column when ``length_scale`` is a list (ARD; Ray's kernel has a
    single one): an input that does not matter — often the reward context — is fitted a long
    length scale and stops inflating the uncertainty of the others. With a single length scale,
    a one-hyperparameter test problem saw about one proposal in eight jump to a bound, where no
    data had the donor's context; with ARD, one in a hundred.

    Args:
        length_scale: ℓ (a number, or one per non-time column).
        epsilon: forgetting rate per unit of time, in (0, 1).
        length_scale_bounds, epsilon_bounds: the ranges the likelihood fit searches.
    """

    def __init__(self, length_scale: Any = 0.3, epsilon: float = 0.1,
                 length_scale_bounds: tuple[float, float] = (1e-2, 1e2),
                 epsilon_bounds: tuple[float, float] = (1e-5, 0.5)) -> None:
        self.length_scale = length_scale
        self.epsilon = epsilon
        self.length_scale_bounds = length_scale_bounds
        self.epsilon_bounds = epsilon_bounds

    @property
    def hyperparameter_epsilon(self) -> Hyperparameter:
        return Hyperparameter("epsilon", "numeric", self.epsilon_bounds)

    @property
    def hyperparameter_length_scale(self) -> Hyperparameter:
        return Hyperparameter("length_scale", "numeric", self.length_scale_bounds,
                              int(np.size(self.length_scale)))

    def __call__(self, X: Any, Y: Any = None, eval_gradient: bool = False) -> Any:
        X = np.atleast_2d(X)
        if eval_gradient and Y is not None:
            raise ValueError("the gradient is only defined when Y is None")
        Y = X if Y is None else np.atleast_2d(Y)
        eps = float(self.epsilon)
        ell = np.broadcast_to(np.asarray(self.length_scale, dtype=float), (X.shape[1] - 1,))
        dt = np.abs(X[:, :1] - Y[:, :1].T)
        d2 = cdist(X[:, 1:] / ell, Y[:, 1:] / ell, "sqeuclidean")
        K = np.exp(0.5 * dt * math.log1p(-eps) - 0.5 * d2)
        if not eval_gradient:
            return K
        # sklearn differentiates by log-hyperparameters, in the order of ``hyperparameters``
        # (alphabetical: epsilon, then length_scale).
        grads = []
        if not self.hyperparameter_epsilon.fixed:
            grads.append((K * dt * (-0.5 * eps / (1.0 - eps)))[:, :, None])
        if not self.hyperparameter_length_scale.fixed:
            z = X[:, 1:] / ell
            per_dim = (z[:, None, :] - z[None, :, :]) ** 2  # d/d log ℓ_i of −d²/2
            if np.ndim(self.length_scale) == 0:
                per_dim = per_dim.sum(axis=2, keepdims=True)
            grads.append(K[:, :, None] * per_dim)
        return K, np.concatenate(grads, axis=2) if grads else np.empty((len(X), len(X), 0))

    def diag(self, X: Any) -> Any:
        return np.ones(np.atleast_2d(X).shape[0])

    def is_stationary(self) -> bool:
        return False


def fit_gp(X: np.ndarray, y: np.ndarray, seed: int) -> GaussianProcessRegressor:
    """A GP fitted to rows ``X`` and standardised targets ``y``; ``seed`` fixes its restarts."""
    kernel = (ConstantKernel(1.0, (1e-2, 1e2)) * TimeVaryingRBF([0.3] * (X.shape[1] - 1))
              + WhiteKernel(0.1, (1e-5, 1.0)))
    model = GaussianProcessRegressor(kernel=kernel, alpha=1e-8, normalize_y=False,
                                     n_restarts_optimizer=2, random_state=seed)
    # One BLAS thread: the matrices are small, and threads fighting over a busy machine's cores
    # made the fit 4x slower; a hyperparameter at its bound is fine here.
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return model


def ucb_kappa(n_rows: int) -> float:
    """``√β_t`` with Ray's schedule ``β_t = 0.2 + max(0, log(0.4 n))``: grows with the data."""
    return math.sqrt(0.2 + max(0.0, math.log(0.4 * max(n_rows, 1))))


def propose(model: GaussianProcessRegressor, fixed: np.ndarray, pending: np.ndarray,
            seed: int) -> np.ndarray:
    """The point in [0, 1]^d that maximises UCB at the fixed inputs ``[t, context...]``.

    The mean comes from ``model``; the standard deviation from the same kernel conditioned also
    on the ``pending`` points (proposed earlier at this boundary, no reward yet), so a batch
    spreads out where the model is unsure instead of proposing one point k times (GP-BUCB,
    Desautels et al. 2014, as Ray does); where it is sure, the mean decides and the batch may
    repeat a point. The noise variance is left out of the bonus: it is the same everywhere.

    Args:
        model: from :func:`fit_gp`.
        fixed: the leading inputs of the new row (time and context).
        pending: shape (m, d): hyperparameters proposed earlier at this boundary.
        seed: seeds the random candidates.
    """
    with threadpool_limits(1), warnings.catch_warnings():  # rounding: variance 0 is right
        warnings.filterwarnings("ignore", "Predicted variances smaller than 0")
        return _maximise_ucb(model, fixed, pending, seed)


def _maximise_ucb(model: GaussianProcessRegressor, fixed: np.ndarray, pending: np.ndarray,
                  seed: int) -> np.ndarray:
    kernel = model.kernel_
    noise = float(kernel.k2.noise_level)
    d = model.X_train_.shape[1] - fixed.size
    spread = model
    if len(pending):
        rows = np.hstack([np.tile(fixed, (len(pending), 1)), pending])
        spread = GaussianProcessRegressor(kernel=kernel, alpha=model.alpha, optimizer=None)
        spread.fit(np.vstack([model.X_train_, rows]),  # std does not depend on y
                   np.zeros(len(model.X_train_) + len(rows)))
    kappa = ucb_kappa(len(model.X_train_))

    def ucb(points: np.ndarray) -> np.ndarray:
        full = np.hstack([np.tile(fixed, (len(points), 1)), points])
        mean = model.predict(full)
        _, std = spread.predict(full, return_std=True)
        return mean + kappa * np.sqrt(np.maximum(std**2 - noise, 0.0))

    rng = np.random.default_rng(seed)
    candidates = rng.random((N_CANDIDATES, d))
    values = ucb(candidates)
    best = candidates[int(np.argmax(values))]
    best_value = float(np.max(values))
    for start in candidates[np.argsort(-values, kind="stable")[:N_REFINE]]:
        result = minimize(lambda p: -float(ucb(p.reshape(1, -1))[0]), start,
                          method="L-BFGS-B", bounds=[(0.0, 1.0)] * d,
                          options={"maxiter": 50})
        if -float(result.fun) > best_value:
            best, best_value = np.asarray(result.x), -float(result.fun)
    return np.clip(best, 0.0, 1.0)
