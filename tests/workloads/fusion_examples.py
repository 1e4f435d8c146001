"""A float64 TorchWorkload that fuses (MLP with BatchNorm, any of five optimisers): fused and
unfused runs of it differ by rounding of ~1e-15, so the fusion tests can compare exactly. A
module of its own (no pytest) so Ray workers can load it as ``fusion_examples.py:Mlp64``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pbtune.workloads.torch_workload import TorchWorkload

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, nesterov=True),
    "dampened": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.3),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01),
}


class Mlp64(TorchWorkload):
    """float64 MLP with BatchNorm; ``optimizer`` option picks one of :data:`OPTIMIZERS`."""

    name: ClassVar[str] = "test-mlp64"
    fusible: ClassVar[bool] = True
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max", "loss": "min"}
    default_config: ClassVar[Mapping[str, Any]] = {
        "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3, "batch_size": 16}
    default_options: ClassVar[Mapping[str, Any]] = {"optimizer": "sgd"}

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(3)
        y = rng.integers(0, 3, size=130)
        x = rng.normal(size=(130, 6)) + 1.5 * np.eye(3, 6)[y]
        return {"train_x": x[:100], "train_y": y[:100], "val_x": x[100:], "val_y": y[100:]}

    def build_model(self, options: Mapping[str, Any]) -> nn.Module:
        return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(),
                             nn.Linear(12, 3)).double()

    def build_optimizer(self, model: nn.Module, config: Mapping[str, Any]) -> Any:
        opt = OPTIMIZERS[self.options["optimizer"]](model.parameters())
        if isinstance(opt, torch.optim.Adam):  # no momentum: betas[0] plays its part
            self.param_group_keys = {"lr": "lr", "weight_decay": "weight_decay",
                                     "momentum": "betas"}
        return opt

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        if isinstance(self.optimizer, torch.optim.Adam) and "momentum" in config:
            for group in self.optimizer.param_groups:
                group["betas"] = (float(config["momentum"]), 0.999)
            self.config["momentum"] = float(config["momentum"])
            config = {k: v for k, v in config.items() if k != "momentum"}
        super().apply_hyperparameters(config)

    def train_step(self, batch: Any) -> Any:
        x, y = batch
        logits = self.model(x)
        return {"loss": F.cross_entropy(logits, y), "train_accuracy": logits.argmax(1) == y}

    def eval_step(self, batch: Any) -> Any:
        x, y = batch
        logits = self.model(x)
        return {"accuracy": logits.argmax(1) == y,
                "loss": F.cross_entropy(logits, y, reduction="none")}


CONFIGS = [dict(lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=16),
           dict(lr=0.2, momentum=0.0, weight_decay=0.0, batch_size=16),
           dict(lr=0.1, momentum=0.5, weight_decay=1e-2, batch_size=16),
           dict(lr=0.01, momentum=0.99, weight_decay=1e-5, batch_size=16)]
