"""``pbt-toy``: the toy problem of Jaderberg et al. (2017), "Population Based Training", §4.1.

Why: comparing search methods on a neural network mixes the search's quality with training noise
and costs minutes per run. The toy problem isolates the search: the true objective is
``Q(θ) = 1.2 − θ₀² − θ₁²`` (maximum 1.2 at θ = 0), but a member only ever climbs its *surrogate*
``Q̂(θ|h) = 1.2 − h₀θ₀² − h₁θ₁²`` by gradient ascent, so its hyperparameters ``h`` decide how fast
each coordinate of θ shrinks. A member with ``h = (1, 0)`` never moves θ₁; PBT, by copying θ from
the best member and perturbing ``h``, combines progress made under different ``h`` — which no single
fixed ``h`` of the same budget can. Each run takes milliseconds of compute, so engine and search
comparisons over many seeds are cheap.

θ is two float64 numbers updated by plain gradient ascent in numpy (step size ``step_size``,
``steps_per_iteration`` steps per iteration): ``θ ← θ + step_size · ∇Q̂ = θ − step_size · 2hθ``,
the update ``torch.optim.SGD`` makes without momentum. numpy rather than torch because a worker
process that imports torch pays about 3 s of CPU at start-up (torch, then the optimiser's
``torch._dynamo`` import), which on a problem with microseconds of compute *is* the run time.
The problem is deterministic: no data, no RNG; ``seed`` is accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from pbtune.errors import UserError
from pbtune.workloads.base import Workload
from pbtune.workloads.registry import register

_STATE_KEYS = ("theta", "iteration", "config")
_OPTIMUM = 1.2  # Q(0, 0): the best score any member can reach


@register()
class PBTToy(Workload):
    """Gradient ascent on the surrogate ``Q̂(θ|h)``; reports the true ``Q(θ)`` as ``score``."""

    name: ClassVar[str] = "pbt-toy"
    metrics: ClassVar[Mapping[str, str]] = {"score": "max", "loss": "min"}
    default_metric: ClassVar[str] = "score"
    hyperparameters: ClassVar[tuple[str, ...]] = ("h0", "h1")
    default_config: ClassVar[Mapping[str, Any]] = {"h0": 0.5, "h1": 0.5}
    default_param_space: ClassVar[Mapping[str, Any]] = {
        "h0": {"uniform": [0.0, 1.0]}, "h1": {"uniform": [0.0, 1.0]},
    }
    default_mutations: ClassVar[Mapping[str, Any]] = {
        "h0": {"uniform": [0.0, 1.0]}, "h1": {"uniform": [0.0, 1.0]},
    }
    default_options: ClassVar[Mapping[str, Any]] = {
        "step_size": 0.01,  # gradient-ascent step on the surrogate (the paper's 0.01)
        "steps_per_iteration": 4,  # optimiser steps per training iteration
        "theta_init": (0.9, 0.9),  # the paper's starting point: Q = 1.2 - 2 × 0.81 = -0.42
    }

    @classmethod
    def _resolve_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        opts = cls.merge_options(options)
        if float(opts["step_size"]) <= 0:
            raise UserError(f"{cls.name}: step_size must be > 0, got {opts['step_size']}")
        if int(opts["steps_per_iteration"]) < 1:
            raise UserError(f"{cls.name}: steps_per_iteration must be >= 1, "
                            f"got {opts['steps_per_iteration']}")
        if len(opts["theta_init"]) != 2:
            raise UserError(f"{cls.name}: theta_init needs two numbers, got {opts['theta_init']}")
        return opts

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> None:
        """No data: the objective is a formula."""
        cls._resolve_options(options)
        return None

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        data: Any = None,
        options: Mapping[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.check_hyperparameters(config)
        super().__init__(config, data=data, options=options, seed=seed, device="cpu")
        self.options = self._resolve_options(options)
        # float64: thousands of tiny steps must not drift with float32 rounding.
        self.theta = np.array([float(v) for v in self.options["theta_init"]], dtype=np.float64)
        self.step_size = float(self.options["step_size"])
        self.h = np.zeros(2, dtype=np.float64)
        self.apply_hyperparameters(self.config)

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        """In place: ``h`` is read by the next step."""
        self.check_hyperparameters(config)
        for i, key in enumerate(self.hyperparameters):
            if key in config:
                self.h[i] = float(config[key])
                self.config[key] = float(config[key])

    def _true_score(self) -> float:
        return float(_OPTIMUM - np.sum(self.theta**2))

    def train(self, iterations: int = 1) -> dict[str, float]:
        """``steps_per_iteration`` ascent steps on ``Q̂(θ|h)`` per iteration; returns ``−Q̂``.

        The reported surrogate is the one at θ *before* the last step (what an autograd loop
        computes in its forward pass before stepping).
        """
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        surrogate = 0.0
        for _ in range(iterations):
            for _ in range(int(self.options["steps_per_iteration"])):
                surrogate = float(_OPTIMUM - np.sum(self.h * self.theta**2))
                self.theta -= self.step_size * (2.0 * self.h * self.theta)  # ascent on Q̂
            self.iteration += 1
        return {"loss": -surrogate, "surrogate": surrogate}

    def evaluate(self) -> dict[str, float]:
        """The true objective ``Q(θ)`` (``score``, at most 1.2) and ``loss = −score``."""
        score = self._true_score()
        return {"score": score, "loss": -score, "theta0": float(self.theta[0]),
                "theta1": float(self.theta[1])}

    def get_state(self) -> dict[str, Any]:
        """θ (a copy), iteration and the hyperparameters ``h``."""
        return {"theta": self.theta.copy(), "iteration": int(self.iteration),
                "config": dict(self.config)}

    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        """Copy θ in; ``include_rng`` is moot (the toy has no randomness)."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise KeyError(f"{self.name}: state is missing {missing}")
        self.theta[:] = np.asarray(state["theta"], dtype=np.float64)
        self.iteration = int(state["iteration"])
        self.apply_hyperparameters(state["config"])
