"""Bring your own workload: a small MLP on scikit-learn's breast-cancer data (offline, seconds).

Run it with PBT, no changes to pbtune needed::

    pbtune run --workload examples/my_workload.py:MyWorkload
    pbtune run --set workload=examples/my_workload.py:MyWorkload --set population=4

Copy this file and replace the data and the model. What the engine relies on (see
``docs/workloads.md``):

* ``load_data`` runs once per node and returns plain numpy arrays; the engine puts them in Ray's
  object store, and every trial on the node gets the *same read-only* arrays. Never write to them.
* The workload owns its randomness: a private ``torch.Generator`` for the data order, saved in
  ``get_state`` so a resumed trial continues exactly, and left alone by
  ``set_state(..., include_rng=False)`` (PBT exploit), so a copied trial does not replay its donor.
* ``apply_hyperparameters`` changes the optimiser *in place*; rebuilding it would lose momentum.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pbtune.workloads.base import Workload


class MyWorkload(Workload):
    """30 features → hidden → 2 classes; one iteration = one shuffled epoch over 455 samples."""

    name: ClassVar[str] = "my-mlp-breast-cancer"
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max", "loss": "min"}
    default_metric: ClassVar[str] = "accuracy"
    hyperparameters: ClassVar[tuple[str, ...]] = ("lr", "momentum", "batch_size")
    default_config: ClassVar[Mapping[str, Any]] = {"lr": 0.05, "momentum": 0.9, "batch_size": 32}
    default_param_space: ClassVar[Mapping[str, Any]] = {
        "lr": {"loguniform": [1e-3, 0.3]}, "momentum": {"uniform": [0.5, 0.99]}, "batch_size": 32,
    }
    default_mutations: ClassVar[Mapping[str, Any]] = {
        "lr": {"loguniform": [1e-3, 0.3]}, "momentum": {"uniform": [0.5, 0.99]},
        "batch_size": [16, 32, 64],  # a plain list: ordered choices
    }
    default_options: ClassVar[Mapping[str, Any]] = {"hidden": 32, "val_fraction": 0.2}

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Standardised features (float32) and labels (int64), split once with a fixed seed."""
        from sklearn.datasets import load_breast_cancer  # bundled with scikit-learn: no download

        opts = {**cls.default_options, **dict(options)}
        x, y = load_breast_cancer(return_X_y=True)
        perm = np.random.default_rng(0).permutation(len(x))  # fixed split: same for every trial
        n_val = int(len(x) * float(opts["val_fraction"]))
        val, train = perm[:n_val], perm[n_val:]
        mean, std = x[train].mean(0), x[train].std(0) + 1e-8  # statistics of the train split only
        x = ((x - mean) / std).astype(np.float32)
        return {"train_x": x[train], "train_y": y[train].astype(np.int64),
                "val_x": x[val], "val_y": y[val].astype(np.int64)}

    def __init__(self, config: Mapping[str, Any], *, data: Any = None,
                 options: Mapping[str, Any] | None = None, seed: int = 0,
                 device: str = "cpu") -> None:
        super().__init__(config, data=data, options=options, seed=seed, device=device)
        if data is None:
            data = self.load_data(self.options)
        with warnings.catch_warnings():  # shared arrays are read-only; we only ever read them
            warnings.filterwarnings("ignore", message=".*not writable.*")
            self.data = {k: torch.from_numpy(v).to(device) for k, v in data.items()}
        with torch.random.fork_rng(devices=[]):  # weights depend on `seed` only
            torch.manual_seed(seed)
            hidden = int(self.options["hidden"])
            self.model = nn.Sequential(nn.Linear(30, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.model.to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)
        self.generator = torch.Generator().manual_seed(seed)  # this trial's data order
        self.apply_hyperparameters(self.config)

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        unknown = set(config) - set(self.hyperparameters)
        if unknown:
            raise KeyError(f"unknown hyperparameters {sorted(unknown)}")
        for group in self.optimizer.param_groups:  # in place: momentum buffers survive
            for key in ("lr", "momentum"):
                if key in config:
                    group[key] = float(config[key])
        self.config.update(config)
        self.batch_size = int(self.config["batch_size"])

    def train(self, iterations: int = 1) -> dict[str, float]:
        x, y = self.data["train_x"], self.data["train_y"]
        self.model.train()
        total = 0.0
        for _ in range(iterations):
            total = 0.0
            order = torch.randperm(len(x), generator=self.generator).to(x.device)
            for start in range(0, len(x), self.batch_size):
                idx = order[start:start + self.batch_size]
                loss = F.cross_entropy(self.model(x[idx]), y[idx])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                total += float(loss.detach()) * len(idx)
            self.iteration += 1
        return {"loss": total / len(x)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        logits = self.model(self.data["val_x"])
        y = self.data["val_y"]
        return {"accuracy": float((logits.argmax(1) == y).float().mean()),
                "loss": float(F.cross_entropy(logits, y))}

    def get_state(self) -> dict[str, Any]:
        def cpu(obj: Any) -> Any:  # copies, so the state never aliases the live model
            if isinstance(obj, torch.Tensor):
                return obj.detach().to("cpu", copy=True)
            if isinstance(obj, dict):
                return {k: cpu(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [cpu(v) for v in obj]
            return obj

        return {"model": cpu(self.model.state_dict()),
                "optimizer": cpu(self.optimizer.state_dict()),
                "rng": self.generator.get_state(), "iteration": self.iteration,
                "config": dict(self.config)}

    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        self.model.load_state_dict(state["model"])
        # A copy: load_state_dict keeps the CPU tensors it is given, and this state may be a
        # donor's snapshot that other trials load too.
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        if include_rng:
            self.generator.set_state(state["rng"].clone())
        self.iteration = int(state["iteration"])
        self.apply_hyperparameters(state["config"])
