"""A deterministic, torch-free workload for engine tests: a counter that adds ``lr`` per iteration.

Because its score after an iteration is exactly ``state + lr``, a test can check from
``trials.csv`` alone that an exploit copied the donor's exact state and that the explored ``lr``
took effect at the right iteration. Loaded by workers as ``tests/engines/toy_workload.py:Counter``.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from pbtune.workloads.base import Workload


class Counter(Workload):
    name = "toy-counter"
    metrics = {"score": "max", "loss": "min"}
    default_metric = "score"
    hyperparameters = ("lr",)
    default_config = {"lr": 0.1}
    default_param_space = {"lr": {"uniform": [0.0, 1.0]}}
    default_mutations = {"lr": {"uniform": [0.0, 1.0]}}
    precisions = ("fp32", "bf16")  # a label only (no torch): shows which precision a row used
    # noise > 0: each iteration adds noise × a draw from the trial's own RNG (part of its state,
    # kept on exploit like a data order), so results show which RNG a trial continued with.
    # hold_file/hold_at: iteration hold_at waits while hold_file exists (a test decides when a
    # run may go on, so a signal can never come after the run has already finished).
    default_options = {"nan_above": None, "sleep": 0.0, "raise_at": None, "slowdown": 1.0,
                       "noise": 0.0, "hold_file": None, "hold_at": None, "data_error": None,
                       "state_error_above": None, "bad_metric_above": None}

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> Any:
        if options.get("data_error"):
            raise FileNotFoundError(options["data_error"])
        return {"offset": np.zeros(1, dtype=np.float64)}

    def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.value = 0.0
        self.rng = random.Random(self.seed)

    def _broken(self) -> bool:
        limit = self.options["nan_above"]
        return limit is not None and self.config["lr"] > limit

    def train(self, iterations: int = 1) -> dict[str, float]:
        for _ in range(iterations):
            if self.iteration + 1 == self.options["raise_at"]:
                raise RuntimeError("boom in user code")
            if self.options["hold_file"] and self.iteration + 1 == self.options["hold_at"]:
                while os.path.exists(self.options["hold_file"]):
                    time.sleep(0.02)
            # slowdown: a per-node factor (the worker resolves {"slow": 3.0} to a float).
            time.sleep(self.options["sleep"] * float(self.options["slowdown"]))
            self.value += self.config["lr"]
            if self.options["noise"]:
                self.value += self.options["noise"] * self.rng.random()
            self.iteration += 1
        return {"loss": math.nan if self._broken() else -self.value}

    def evaluate(self) -> dict[str, Any]:
        score = math.nan if self._broken() else self.value
        limit = self.options["bad_metric_above"]
        if limit is not None and self.config["lr"] > limit:  # a user's formatting mistake
            return {"score": f"{score:.3f}", "loss": -score}
        return {"score": score, "loss": -score}

    def get_state(self) -> dict[str, Any]:
        state = {"value": self.value, "iteration": self.iteration, "config": dict(self.config),
                 "rng": self.rng.getstate()}
        limit = self.options["state_error_above"]
        if limit is not None and self.config["lr"] > limit:
            state["lock"] = threading.Lock()  # cannot be pickled
        return state

    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        self.value = state["value"]
        self.iteration = state["iteration"]
        self.config = dict(state["config"])
        if include_rng and "rng" in state:
            self.rng.setstate(state["rng"])

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        unknown = set(config) - set(self.hyperparameters)
        if unknown:
            raise KeyError(f"unknown hyperparameters {sorted(unknown)}")
        self.config.update(config)
