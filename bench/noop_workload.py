"""A workload that does nothing: for measuring the engine's own overhead (``bench/soak.py``).

Loaded by path (``bench/noop_workload.py:Noop``), so it never appears in the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pbtune.workloads.base import Workload


class Noop(Workload):
    name = "noop"
    metrics = {"score": "max"}
    default_metric = "score"
    hyperparameters = ("lr",)
    default_config = {"lr": 0.1}
    default_param_space = {"lr": {"uniform": [0.0, 1.0]}}
    default_mutations = {"lr": {"uniform": [0.0, 1.0]}}

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> Any:
        return None

    def train(self, iterations: int = 1) -> dict[str, float]:
        self.iteration += iterations
        return {"loss": 0.0}

    def evaluate(self) -> dict[str, float]:
        return {"score": float(self.config["lr"])}

    def get_state(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "config": dict(self.config)}

    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        self.iteration = state["iteration"]
        self.config = dict(state["config"])

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        self.config.update(config)
