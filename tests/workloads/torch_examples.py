"""Small TorchWorkloads that exercise what the built-ins do not: an LR scheduler with warm-up,
AdamW's ``beta1``, dropout (the owned global RNG), a non-optimiser hyperparameter handled by a
hook, gradient accumulation, iterations of N steps across epochs, and a GAN (two models, two
optimisers, manual optimisation, images only). Used by the TorchWorkload contract tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pbtune.workloads.torch_workload import TorchWorkload


def blobs(n: int = 126, features: int = 6, classes: int = 3) -> dict[str, np.ndarray]:
    """A fixed, learnable classification problem: class means plus noise."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, classes, size=n)
    x = rng.normal(size=(n, features)) + 2.0 * np.eye(classes, features)[y]
    x = x.astype(np.float32)
    return {"train_x": x[:96], "train_y": y[:96].astype(np.int64),
            "val_x": x[96:], "val_y": y[96:].astype(np.int64)}


class ScheduledAdam(TorchWorkload):
    """AdamW + warm-up LambdaLR + dropout; iterations of ``steps_per_iteration`` steps."""

    name: ClassVar[str] = "test-scheduled-adam"
    metrics: ClassVar[Mapping[str, str]] = {"loss": "min", "accuracy": "max"}
    default_config: ClassVar[Mapping[str, Any]] = {
        "lr": 0.01, "beta1": 0.9, "weight_decay": 0.01, "batch_size": 16, "dropout": 0.2}
    default_options: ClassVar[Mapping[str, Any]] = {"warmup": 8, "steps_per_iteration": 4}

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return blobs()

    def build_model(self, options: Mapping[str, Any]) -> nn.Module:
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

    def build_optimizer(self, model: nn.Module, config: Mapping[str, Any]) -> Any:
        return torch.optim.AdamW(model.parameters(), lr=config["lr"])

    def build_scheduler(self, optimizer: Any, options: Mapping[str, Any]) -> Any:
        warmup = int(options["warmup"])
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))

    def on_hyperparameters(self, changed: Mapping[str, Any]) -> None:
        if "dropout" in changed:
            self.model[2].p = float(changed["dropout"])

    def train_step(self, batch: Any) -> Any:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def eval_step(self, batch: Any) -> Any:
        x, y = batch
        logits = self.model(x)
        return {"loss": F.cross_entropy(logits, y), "accuracy": logits.argmax(1) == y}


class TinyGAN(TorchWorkload):
    """A GAN on 4-d points: two models, two Adam optimisers (lr_g, lr_d, a shared beta1)."""

    name: ClassVar[str] = "test-tiny-gan"
    metrics: ClassVar[Mapping[str, str]] = {"score": "max"}
    default_config: ClassVar[Mapping[str, Any]] = {
        "lr_g": 2e-3, "lr_d": 2e-3, "beta1": 0.5, "batch_size": 16}
    param_group_keys: ClassVar[Mapping[str, Any]] = {
        "lr_g": "generator:lr", "lr_d": "discriminator:lr",
        "beta1": ["generator:beta1", "discriminator:beta1"]}
    manual_optimization: ClassVar[bool] = True
    train_arrays: ClassVar[tuple[str, ...]] = ("train_x",)
    eval_arrays: ClassVar[tuple[str, ...]] = ("val_x",)

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        x = np.random.default_rng(3).normal(1.5, 0.5, size=(80, 4)).astype(np.float32)
        return {"train_x": x[:64], "val_x": x[64:]}

    def build_model(self, options: Mapping[str, Any]) -> dict[str, nn.Module]:
        return {"generator": nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)),
                "discriminator": nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.2),
                                               nn.Linear(16, 1))}

    def build_optimizer(self, model: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        return {name: torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.999))
                for name, m in model.items()}

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        g, d = self.model["generator"], self.model["discriminator"]
        z = torch.randn(real.shape[0], 8, device=real.device)  # the trial's own stream
        ones, zeros = torch.ones(real.shape[0], 1), torch.zeros(real.shape[0], 1)
        fake = g(z)
        loss_d = (F.binary_cross_entropy_with_logits(d(real), ones)
                  + F.binary_cross_entropy_with_logits(d(fake.detach()), zeros))
        self.backward_step(loss_d, "discriminator")
        loss_g = F.binary_cross_entropy_with_logits(d(fake), ones)
        self.backward_step(loss_g, "generator")
        return {"loss": loss_d.detach() + loss_g.detach(), "loss_d": loss_d.detach(),
                "loss_g": loss_g.detach()}

    def eval_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.model["generator"](torch.randn(real.shape[0], 8))
        return {"score": -(fake.mean(0) - real.mean(0)).pow(2).sum()}
