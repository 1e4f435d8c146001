"""``digits-cnn``: a small CNN on scikit-learn's bundled 8×8 handwritten digits.

Why: the quickstart and the engine benchmarks need a *real* task that runs offline in seconds on
a laptop CPU (1,797 images ship with scikit-learn) yet still rewards good hyperparameters, so PBT
visibly helps. It is also the reference torch workload: private data-order RNG, in-place
hyperparameter changes, bit-for-bit resumable state. Minibatches come from tensor indexing, not a
DataLoader, so benchmarks measure the engine's overhead rather than data-loading overhead.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pbtune.errors import UserError
from pbtune.workloads._torch_utils import (
    configure_threads,
    generator_state,
    load_optimizer_state,
    restore_generator,
    seeded_generator,
    seeded_init,
    set_param_groups,
    state_to_cpu,
)
from pbtune.workloads.base import Workload
from pbtune.workloads.registry import register

_DATA_KEYS = ("train_x", "train_y", "val_x", "val_y")
_DTYPES = {"train_x": np.float32, "val_x": np.float32, "train_y": np.int64, "val_y": np.int64}
_STATE_KEYS = ("model", "optimizer", "rng", "iteration", "config")


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
class DigitsCNN(Workload):
    """SGD-trained CNN on digits; one iteration = ``epochs_per_iteration`` epochs."""

    name: ClassVar[str] = "digits-cnn"
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
        "epochs_per_iteration": 1,
        "val_fraction": 0.2,  # of all 1,797 images → 360 validation, 1,437 training
        "split_seed": 0,  # fixes the split; independent of the trial seed
        "width": 16,  # channels of the first conv layer
        # NHWC layout for the conv/pool kernels. On CPU max_pool2d (forward + backward) is 2.5x
        # and one iteration 1.24x faster in it (bench/digits_layout.py, docs/benchmarks.md);
        # results differ from NCHW only in rounding.
        "channels_last": True,
        "threads": None,  # torch intra-op threads; None leaves torch's setting alone
        "slowdown": 1.0,  # ≥ 1: sleep (slowdown - 1) × compute time per iteration (benchmarks)
    }

    @classmethod
    def _resolve_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Merge over the defaults and reject typos/bad values with a one-line UserError."""
        opts = cls.merge_options(options)
        if not 0.0 < float(opts["val_fraction"]) < 1.0:
            raise UserError(
                f"{cls.name}: val_fraction must be in (0, 1), got {opts['val_fraction']}"
            )
        for key in ("epochs_per_iteration", "width"):
            if int(opts[key]) < 1:
                raise UserError(f"{cls.name}: {key} must be >= 1, got {opts[key]}")
        if float(opts["slowdown"]) < 1.0:
            raise UserError(f"{cls.name}: slowdown must be >= 1.0, got {opts['slowdown']}")
        if not isinstance(opts["channels_last"], bool):
            raise UserError(f"{cls.name}: channels_last must be true or false, "
                            f"got {opts['channels_last']!r}")
        if opts["threads"] is not None and int(opts["threads"]) < 1:
            raise UserError(f"{cls.name}: threads must be >= 1 or null, got {opts['threads']}")
        return opts

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The fixed stratified split as numpy arrays: x (N, 1, 8, 8) float32 in [0, 1], y int64."""
        opts = cls._resolve_options(options)
        images, y = read_digits()
        x = (images.astype(np.float32) / 16.0)[:, None, :, :]  # pixel values are 0..16
        train, val = _stratified_split(y, float(opts["val_fraction"]), int(opts["split_seed"]))
        return {
            "train_x": np.ascontiguousarray(x[train]), "train_y": np.ascontiguousarray(y[train]),
            "val_x": np.ascontiguousarray(x[val]), "val_y": np.ascontiguousarray(y[val]),
        }

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
        super().__init__(config, data=data, options=options, seed=seed, device=device)
        self.options = self._resolve_options(options)
        configure_threads(self.options["threads"])
        if data is None:
            data = self.load_data(self.options)
        missing = [k for k in _DATA_KEYS if k not in data]
        if missing:
            raise UserError(f"{self.name}: data is missing {missing}; pass what load_data returns")
        # One private copy each: the shared arrays may be read-only views into Ray's object store,
        # and digits is tiny (~0.5 MB), so copying once beats any zero-copy subtlety.
        self._data = {
            k: torch.from_numpy(np.array(data[k], dtype=_DTYPES[k])).to(device)  # np.array copies
            for k in _DATA_KEYS
        }
        with seeded_init(seed):
            self.model = _DigitsNet(int(self.options["width"])).to(device)
        if self.options["channels_last"]:  # before the optimiser: it holds these parameters
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)
        self.generator = seeded_generator(seed)  # CPU: data order (randperm of CPU indices)
        self.batch_size = 64
        self.apply_hyperparameters(self.config)

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        """In place: same optimiser object and momentum buffers; batch size from the next epoch."""
        self.check_hyperparameters(config)
        values = {k: float(config[k]) for k in ("lr", "momentum", "weight_decay") if k in config}
        batch_size = int(config.get("batch_size", self.batch_size))
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        set_param_groups(self.optimizer, **values)
        self.batch_size = batch_size  # read at the start of each epoch
        self.config.update(values)
        if "batch_size" in config:
            self.config["batch_size"] = batch_size

    def _epoch(self) -> tuple[float, int, int]:
        """One shuffled pass; returns (loss summed over samples, correct, samples)."""
        x, y = self._data["train_x"], self._data["train_y"]
        n = x.shape[0]
        order = torch.randperm(n, generator=self.generator).to(x.device)
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        self.model.train()
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            logits = self.model(xb)
            loss = F.cross_entropy(logits, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * idx.numel()
            correct += (logits.detach().argmax(1) == yb).sum()
        return float(loss_sum.item()), int(correct.item()), n

    def train(self, iterations: int = 1) -> dict[str, float]:
        """Train; returns the last iteration's mean loss/accuracy (NaN is returned, not raised)."""
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        slowdown = float(self.options["slowdown"])
        loss_sum, correct, seen = 0.0, 0, 0
        for _ in range(iterations):
            start = time.perf_counter()
            loss_sum, correct, seen = 0.0, 0, 0
            for _ in range(int(self.options["epochs_per_iteration"])):
                epoch_loss, epoch_correct, n = self._epoch()
                loss_sum, correct, seen = loss_sum + epoch_loss, correct + epoch_correct, seen + n
            self.iteration += 1
            if slowdown > 1.0:  # simulate a node `slowdown` times slower than this one
                time.sleep((slowdown - 1.0) * (time.perf_counter() - start))
        return {"loss": loss_sum / seen, "train_accuracy": correct / seen}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Accuracy and mean cross-entropy on the fixed validation split (360 images by default)."""
        self.model.eval()
        logits = self.model(self._data["val_x"])
        y = self._data["val_y"]
        return {
            "accuracy": int((logits.argmax(1) == y).sum().item()) / y.shape[0],  # exact ratio
            "loss": float(F.cross_entropy(logits, y).item()),
        }

    def get_state(self) -> dict[str, Any]:
        """CPU copies of model, optimiser (incl. momentum buffers) and data-order RNG."""
        return {
            "model": state_to_cpu(self.model.state_dict()),
            "optimizer": state_to_cpu(self.optimizer.state_dict()),
            "rng": generator_state(self.generator),
            "iteration": int(self.iteration),
            "config": dict(self.config),
        }

    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        """Load a state (copied in, never aliased).

        ``include_rng=False`` (PBT exploit) keeps this trial's data-order stream.
        """
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise KeyError(f"{self.name}: state is missing {missing}")
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])  # a copy; same optimiser
        if include_rng:
            restore_generator(self.generator, state["rng"])
        self.iteration = int(state["iteration"])
        self.apply_hyperparameters(state["config"])
