"""A small TorchWorkload for gang tests: regression on fixed synthetic data, with optional
BatchNorm (its buffers must be equal on every rank) and momentum (optimiser state to copy).

Loaded by workers as ``tests/engines/gang_workload.py:Regress``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pbtune.workloads.torch_workload import TorchWorkload


class Regress(TorchWorkload):
    name = "test-regress"
    metrics = {"val_loss": "min"}
    default_config = {"lr": 0.05, "momentum": 0.5}
    default_param_space = {"lr": {"loguniform": [0.01, 0.1]}}
    default_mutations = {"lr": {"loguniform": [0.01, 0.1]}}
    # fail_rank/fail_at: that rank raises in the iteration that reaches fail_at (a rank's own
    # bug: the gang must end, not hang with rank 0 waiting in a collective).
    default_options = {"batch_size": 8, "n": 96, "bn": False, "sleep": 0.0, "fail_rank": -1,
                       "fail_at": 0}

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        n = int(options["n"])
        x = rng.normal(size=(n, 6)).astype(np.float32)
        y = (x @ rng.normal(size=6) + 0.1 * rng.normal(size=n)).astype(np.float32)
        return {"train_x": x, "train_y": y, "val_x": x[:32], "val_y": y[:32]}

    def build_model(self, options: Mapping[str, Any]) -> nn.Module:
        norm = [nn.BatchNorm1d(16)] if options["bn"] else []
        return nn.Sequential(nn.Linear(6, 16), *norm, nn.Tanh(), nn.Linear(16, 1))

    def build_optimizer(self, model: nn.Module, config: Mapping[str, Any]) -> Any:
        return torch.optim.SGD(model.parameters(), lr=float(config["lr"]),
                               momentum=float(config["momentum"]))

    def train_step(self, batch: Any) -> torch.Tensor:
        x, y = batch
        if self.rank == self.options["fail_rank"] and self.iteration + 1 == self.options["fail_at"]:
            raise RuntimeError(f"rank {self.rank} fails at iteration {self.iteration + 1}")
        if self.options["sleep"]:
            import time

            time.sleep(float(self.options["sleep"]))
        return F.mse_loss(self.model(x).squeeze(-1), y)

    def eval_step(self, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"val_loss": F.mse_loss(self.model(x).squeeze(-1), y)}
