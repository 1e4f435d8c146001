"""``digits-cnn``: a small CNN on scikit-learn's bundled 8×8 handwritten digits.

Why: the quickstart and the engine benchmarks need a *real* task that runs offline in seconds on
a laptop CPU (1,797 images ship with scikit-learn) yet still rewards good hyperparameters, so PBT
visibly helps. It is built on :class:`~pbtune.workloads.torch_workload.TorchWorkload` (private
data-order RNG, in-place hyperparameter changes, bit-for-bit resumable state), and it is that
base's reference user. Minibatches come from tensor indexing over the shared arrays, not a
DataLoader, so benchmarks measure the engine's overhead rather than data-loading overhead.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pbtune.errors import UserError
from pbtune.workloads.registry import register
from pbtune.workloads.torch_workload import TorchWorkload


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as (images (N, 8, 8) float64 0..16, targets (N,) int64).

    Why not ``sklearn.datasets.load_digits``: importing ``sklearn.datasets`` costs about 1.5 s of
    CPU, paid by the driver while the workers start on the same cores. The data is one CSV file
    inside the scikit-learn package (64 pixel columns then the label), which is what
    ``load_digits`` itself reads; it is located without importing scikit-learn and parsed with
    numpy. If the file is not where scikit-learn keeps it (a future layout), ``load_digits`` runs.
    """
    spec = importlib.util.find_spec("sklearn")  # a top-level find_spec imports nothing
    locations = list(spec.submodule_search_locations or []) if spec else []
    for root in locations:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def _stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Train/val indices with each class split in the same proportion.

    Done with numpy rather than sklearn's ``train_test_split`` so the split cannot change with the
    scikit-learn version: every trial, run and replay is evaluated on the same validation images.
    """
    rng = np.random.default_rng(seed)
    labels, counts = np.unique(y, return_counts=True)
    # Validation size as sklearn computes it (ceil), shared out by largest remainder so the class
    # proportions match as closely as whole images allow: 1,797 × 0.2 → 360 val, 1,437 train.
    quota = counts * (math.ceil(len(y) * val_fraction) / len(y))
    n_val = np.floor(quota).astype(np.int64)
    short = int(math.ceil(len(y) * val_fraction) - n_val.sum())
    n_val[np.argsort(-(quota - n_val), kind="stable")[:short]] += 1
    train_idx, val_idx = [], []
    for label, k in zip(labels, n_val, strict=True):
        idx = rng.permutation(np.flatnonzero(y == label))
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


class _DigitsNet(nn.Module):
    """conv(1→w) → conv(w→2w) → maxpool → 64 → 10.

    No dropout: the only randomness after initialisation is the data order, which the workload
    owns, so a state continues bit-for-bit.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * 4 * 4, 64)  # 8×8 input, one 2×2 pool → 4×4
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


@register()
class DigitsCNN(TorchWorkload):
    """SGD-trained CNN on digits; one iteration = ``epochs_per_iteration`` epochs.

    Built on :class:`TorchWorkload`: what is digits' own is the data split, the net and its
    options; state, RNG, batching and in-place hyperparameters are the base's.
    """

    name: ClassVar[str] = "digits-cnn"
    fusible: ClassVar[bool] = True  # members_per_worker > 1 trains K of them as one model
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max", "loss": "min"}
    default_metric: ClassVar[str] = "accuracy"
    hyperparameters: ClassVar[tuple[str, ...]] = ("lr", "momentum", "weight_decay", "batch_size")
    default_config: ClassVar[Mapping[str, Any]] = {
        "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 64,
    }
    default_param_space: ClassVar[Mapping[str, Any]] = {
        "lr": {"loguniform": [0.001, 0.3]},
        "momentum": {"uniform": [0.5, 0.99]},
        "weight_decay": {"loguniform": [1e-6, 1e-3]},
        "batch_size": 64,
    }
    default_mutations: ClassVar[Mapping[str, Any]] = {
        "lr": {"loguniform": [0.001, 0.3]},
        "momentum": {"uniform": [0.5, 0.99]},
        "weight_decay": {"loguniform": [1e-6, 1e-3]},
    }
    default_options: ClassVar[Mapping[str, Any]] = {
        "val_fraction": 0.2,  # of all 1,797 images → 360 validation, 1,437 training
        "split_seed": 0,  # fixes the split; independent of the trial seed
        "width": 16,  # channels of the first conv layer
        # NHWC layout for the conv/pool kernels. On CPU max_pool2d (forward + backward) is 2.5x
        # and one iteration 1.24x faster in it (bench/digits_layout.py, docs/benchmarks.md);
        # results differ from NCHW only in rounding.
        "channels_last": True,
    }

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The base's checks plus digits' own; a bad value is a one-line UserError."""
        opts = super().resolve_options(options)
        if not 0.0 < float(opts["val_fraction"]) < 1.0:
            raise UserError(
                f"{cls.name}: val_fraction must be in (0, 1), got {opts['val_fraction']}"
            )
        if int(opts["width"]) < 1:
            raise UserError(f"{cls.name}: width must be >= 1, got {opts['width']}")
        if not isinstance(opts["channels_last"], bool):
            raise UserError(f"{cls.name}: channels_last must be true or false, "
                            f"got {opts['channels_last']!r}")
        return opts

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The fixed stratified split as numpy arrays: x (N, 1, 8, 8) float32 in [0, 1], y int64."""
        opts = cls.resolve_options(options)
        images, y = read_digits()
        x = (images.astype(np.float32) / 16.0)[:, None, :, :]  # pixel values are 0..16
        train, val = _stratified_split(y, float(opts["val_fraction"]), int(opts["split_seed"]))
        return {
            "train_x": np.ascontiguousarray(x[train]), "train_y": np.ascontiguousarray(y[train]),
            "val_x": np.ascontiguousarray(x[val]), "val_y": np.ascontiguousarray(y[val]),
        }

    def build_model(self, options: Mapping[str, Any]) -> nn.Module:
        model = _DigitsNet(int(options["width"]))
        if options["channels_last"]:  # before the optimiser: it holds these parameters
            model = model.to(memory_format=torch.channels_last)
        return model

    def build_optimizer(self, model: nn.Module, config: Mapping[str, Any]) -> torch.optim.SGD:
        return torch.optim.SGD(model.parameters(), lr=float(config["lr"]))

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self.model(x)
        return {"loss": F.cross_entropy(logits, y), "train_accuracy": logits.argmax(1) == y}

    def eval_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accuracy and cross-entropy per image of the fixed validation split (360 images)."""
        x, y = batch
        logits = self.model(x)
        return {"accuracy": logits.argmax(1) == y,
                "loss": F.cross_entropy(logits, y, reduction="none")}
