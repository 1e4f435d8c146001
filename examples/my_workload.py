"""Your model on TorchWorkload. Run: pbtune run --workload examples/my_workload.py:MyWorkload"""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer  # bundled with scikit-learn: offline
from torch import nn

import pbtune

SPACE = {"lr": {"loguniform": [1e-3, 0.3]}, "momentum": {"uniform": [0.5, 0.99]}, "batch_size": 32}


class MyWorkload(pbtune.TorchWorkload):  # it does state, RNG, batching, exploit, explore
    metrics = {"accuracy": "max", "loss": "min"}  # what eval_step reports; PBT ranks by the first
    default_config = {"lr": 0.05, "momentum": 0.9, "batch_size": 32}  # the tunables
    default_param_space, default_mutations = SPACE, {**SPACE, "batch_size": [16, 32, 64]}
    default_options = {"hidden": 32}  # fixed settings (`options:` in the YAML)

    @classmethod
    def load_data(cls, options):  # once per node; numpy arrays shared read-only by all trials
        x, y = load_breast_cancer(return_X_y=True)
        val, train = np.split(np.random.default_rng(0).permutation(len(x)), [114])  # fixed split
        x = ((x - x[train].mean(0)) / x[train].std(0)).astype(np.float32)
        return {"train_x": x[train], "train_y": y[train], "val_x": x[val], "val_y": y[val]}

    def build_model(self, options):  # built under the trial's seed, moved to its device
        hidden = options["hidden"]
        return nn.Sequential(nn.Linear(30, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def build_optimizer(self, model, config):
        return torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])

    def train_step(self, batch):  # (x, y) of a shuffled minibatch; returns the loss
        return F.cross_entropy(self.model(batch[0]), batch[1])

    def eval_step(self, batch):  # per-sample values are averaged over the validation set
        logits, y = self.model(batch[0]), batch[1]
        loss = F.cross_entropy(logits, y, reduction="none")
        return {"accuracy": logits.argmax(1) == y, "loss": loss}
