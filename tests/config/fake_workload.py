"""A tiny fake workload for config tests: no torch, no data, known metrics and hyperparameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pbtune.workloads.base import Workload

FAKE = "fake-config"


class FakeWorkload(Workload):
    metrics = {"score": "max", "loss": "min"}
    default_metric = "score"
    hyperparameters = ("lr", "depth")
    default_config = {"lr": 0.01, "depth": 2}
    default_param_space = {"lr": {"loguniform": [1e-3, 1e-1]}, "depth": 2}
    default_mutations = {"lr": {"loguniform": [1e-3, 1e-1]}, "depth": [1, 2, 3]}
    default_options = {"width": 4, "data_dir": None}

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> Any:
        return None

    def train(self, iterations: int = 1) -> dict[str, float]:
        return {"loss": 0.0}

    def evaluate(self) -> dict[str, float]:
        return {"score": 1.0, "loss": 0.0}

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        pass

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        pass


def explore_identity(config: dict[str, Any]) -> dict[str, Any]:
    """An importable custom_explore_fn for resolve tests."""
    return config


def explore_raises(config: dict[str, Any]) -> dict[str, Any]:
    """A custom_explore_fn with a bug, for the config-time dry run."""
    raise RuntimeError("bug in my explore")


def explore_not_a_dict(config: dict[str, Any]) -> Any:
    """A custom_explore_fn that forgets to return the config."""
    return None
