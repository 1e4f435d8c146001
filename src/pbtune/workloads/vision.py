"""Vision workloads: ResNet-18/CIFAR-10, ResNet-50/CIFAR-100, MLP/FashionMNIST.

Why: these are the original PBT experiments (population 20, batch 512, stop at 80 % accuracy),
and at their scale the data path, not PBT, decides throughput. So each trial reads minibatches
straight out of the node-shared uint8 arrays from :meth:`VisionWorkload.load_data` (zero-copy
views into Ray's object store on CPU; one device copy per worker process on CUDA, shared by every
trial the worker runs), and crops, flips and normalises whole batches on the training device with
its own generator (:mod:`pbtune.workloads.augment`). No DataLoader, no PIL, no per-trial copy of
the training set. On CUDA: bf16 autocast (``resources.precision``) and channels-last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from pbtune.errors import UserError
from pbtune.workloads import datasets
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
from pbtune.workloads.augment import AugmentStream, crop_flip, normalize
from pbtune.workloads.base import Workload
from pbtune.workloads.models import build_model, to_device
from pbtune.workloads.precision import autocast_dtype
from pbtune.workloads.shared_data import image_splits

_STATE_KEYS = ("model", "optimizer", "rng", "iteration", "config")
#: search space and mutations of the SGD hyperparameters (Ray-Tune-style domain specs)
_DOMAINS: dict[str, Any] = {
    "lr": {"loguniform": [1e-3, 0.4]},
    "momentum": {"uniform": [0.8, 0.99]},
    "weight_decay": {"loguniform": [1e-5, 1e-3]},
}
_AUG_SEED_OFFSET = 1_000_003  # the augmentation stream must differ from the data-order stream


class VisionWorkload(Workload):
    """SGD image classifier on a registered dataset; one iteration = ``epochs_per_iteration``."""

    dataset: ClassVar[str] = ""  # key in pbtune.workloads.datasets
    arch: ClassVar[str] = ""  # key in pbtune.workloads.models
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "max", "loss": "min"}
    default_metric: ClassVar[str] = "accuracy"
    hyperparameters: ClassVar[tuple[str, ...]] = ("lr", "momentum", "weight_decay", "batch_size")
    default_config: ClassVar[Mapping[str, Any]] = {
        "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 512,
    }
    default_param_space: ClassVar[Mapping[str, Any]] = {**_DOMAINS, "batch_size": 512}
    default_mutations: ClassVar[Mapping[str, Any]] = {
        **_DOMAINS,
        "batch_size": [128, 256, 512, 1024],  # ordered categorical: explore moves to a neighbour
    }
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")  # fp16 with a GradScaler
    default_options: ClassVar[Mapping[str, Any]] = {
        "data_dir": "./data",
        "download": True,  # try torchvision's download when files are missing
        "verify_checksums": True,  # False accepts non-official files (tests, re-packed copies)
        "val_size": 5000,  # images taken from the training set for PBT's ranking
        "split_seed": 0,  # fixes the validation split; independent of trial seeds
        "subset": None,  # int: keep only the first N training images (tests, benchmarks)
        "epochs_per_iteration": 1,
        "steps_per_iteration": None,  # int: cap an iteration at N optimiser steps (tests)
        "width": 64,  # channels of the stem/stage 1 (64 = standard ResNet)
        "cifar_stem": True,  # 3×3 stride-1 first conv, no max-pool (32×32 inputs)
        "augment": True,  # random crop (4 px padding) + horizontal flip, batched on device
        "channels_last": True,  # CUDA only
        "eval_batch_size": 1024,  # images per evaluation forward pass
        "threads": None,  # torch intra-op threads; None leaves torch's setting alone
        "slowdown": 1.0,  # ≥ 1: sleep (slowdown - 1) × compute time per iteration (benchmarks)
    }

    @classmethod
    def _resolve_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Merge over the defaults and reject typos/bad values with a one-line UserError."""
        opts = cls.merge_options(options)
        for key in ("epochs_per_iteration", "width", "eval_batch_size", "val_size"):
            if int(opts[key]) < 1:
                raise UserError(f"{cls.name}: {key} must be >= 1, got {opts[key]}")
        for key in ("subset", "steps_per_iteration", "threads"):
            if opts[key] is not None and int(opts[key]) < 1:
                raise UserError(f"{cls.name}: {key} must be >= 1 or null, got {opts[key]}")
        if float(opts["slowdown"]) < 1.0:
            raise UserError(f"{cls.name}: slowdown must be >= 1.0, got {opts['slowdown']}")
        return opts

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Decode once: ``{train,val,test}_x`` uint8 images and ``{train,val,test}_y`` int64."""
        opts = cls._resolve_options(options)
        return datasets.create(
            cls.dataset, opts["data_dir"], val_size=int(opts["val_size"]),
            split_seed=int(opts["split_seed"]), subset=opts["subset"],
            download=bool(opts["download"]), verify_checksums=bool(opts["verify_checksums"]),
        )

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        data: Any = None,
        options: Mapping[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        self.check_hyperparameters(config)
        super().__init__(config, data=data, options=options, seed=seed, device=device,
                         precision=precision)
        self.options = self._resolve_options(options)
        configure_threads(self.options["threads"])
        self.spec = datasets.get(self.dataset)
        self._device = torch.device(device)
        cuda = self._device.type == "cuda"
        self._amp_dtype = autocast_dtype(self.precision)  # resources.precision; None: fp32
        self._channels_last = bool(self.options.get("channels_last", False)) and cuda
        if data is None:
            data = self.load_data(self.options)
        self._x, self._y = image_splits(self.name, data, self.spec.image_shape,
                                        self.options["subset"], self._device)
        with seeded_init(seed):
            model = build_model(self.arch, self.spec.num_classes, in_shape=self.spec.image_shape,
                                width=int(self.options["width"]),
                                cifar_stem=bool(self.options.get("cifar_stem", False)))
        self.model = to_device(model, self._device, self._channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.generator = seeded_generator(seed)  # CPU: data order
        self.aug_rng = AugmentStream(seed + _AUG_SEED_OFFSET, self._device)  # portable state
        # fp16 needs loss scaling; for fp32/bf16 the disabled scaler is a pass-through.
        self.scaler = torch.amp.GradScaler(self._device.type, enabled=self.precision == "fp16")
        self.batch_size = int(self.default_config["batch_size"])
        self.apply_hyperparameters(self.config)

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        """In place: same optimiser and momentum buffers; a new batch size applies from the next
        iteration."""
        self.check_hyperparameters(config)
        values = {k: float(config[k]) for k in ("lr", "momentum", "weight_decay") if k in config}
        set_param_groups(self.optimizer, **values)
        self.config.update(values)
        if "batch_size" in config:
            batch_size = int(config["batch_size"])
            if batch_size < 1:
                raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
            self.batch_size = batch_size
            self.config["batch_size"] = batch_size

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self._device.type, dtype=self._amp_dtype or torch.float32,
                              enabled=self._amp_dtype is not None)

    def _inputs(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 batch → normalised float batch, augmented when training (all on the device)."""
        if train and self.options["augment"]:
            images = crop_flip(images, self.aug_rng.generator(), padding=4, flip=True)
        fmt = torch.channels_last if self._channels_last else torch.contiguous_format
        return normalize(images, self.spec.mean, self.spec.std, memory_format=fmt)

    def train(self, iterations: int = 1) -> dict[str, float]:
        """Train; returns the last iteration's mean loss/accuracy (NaN is returned, not raised)."""
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        slowdown = float(self.options["slowdown"])
        result: dict[str, float] = {}
        self.model.train()
        for _ in range(iterations):
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=self._device)  # summed over samples
            correct = torch.zeros((), dtype=torch.int64, device=self._device)
            seen = 0
            for batch, n in self._batches():
                with self._autocast():
                    out = self._step(batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(out["loss"]).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                loss_sum += out["loss"].detach().float() * n
                correct += out["train_accuracy"].sum()
                seen += n
            result = {"loss": float(loss_sum.item()) / max(seen, 1),
                      "train_accuracy": int(correct.item()) / max(seen, 1)}
            self.iteration += 1
            if slowdown > 1.0:  # simulate a node `slowdown` times slower than this one
                time.sleep((slowdown - 1.0) * (time.perf_counter() - start))
        # Gradients are not needed between iterations: free them, so a trial parked on a GPU
        # worker holds weights and optimiser state only (a model's worth less per live trial).
        self.optimizer.zero_grad(set_to_none=True)
        return result

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Accuracy and mean cross-entropy on ``split``: ``"val"`` (PBT) or ``"test"`` (final)."""
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        self.model.eval()
        loss_sum = torch.zeros((), device=self._device)
        correct = torch.zeros((), dtype=torch.int64, device=self._device)
        for batch, _n in self._eval_batches(split):
            with self._autocast():
                out = self._eval_step(batch)
            loss_sum += out["loss"].sum()
            correct += out["accuracy"].sum()
        n = max(self._x[split].shape[0], 1)
        return {"accuracy": int(correct.item()) / n, "loss": float(loss_sum.item()) / n}

    fusible: ClassVar[bool] = True  # members_per_worker > 1 trains K of them as one model

    def fusion(self) -> Any:
        """This trial as a fused group's member (:class:`~pbtune.workloads.fusion.FusionView`);
        None with fp16 loss scaling or a simulated slowdown (those train alone)."""
        from pbtune.workloads.fusion import FusionView

        if self.scaler.is_enabled() or float(self.options["slowdown"]) > 1.0:
            return None
        return FusionView(key=(self.batch_size, self.precision, str(self._device),
                               repr(sorted(self.options.items()))),
                          model=self.model, optimizer=self.optimizer, batches=self._batches,
                          train_step=self._step, eval_batches=self._eval_batches,
                          eval_step=self._eval_step, autocast=self._autocast)

    def _batches(self) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor], int]]:
        """One iteration's (inputs, labels), augmented on the device: ``epochs_per_iteration``
        shuffled epochs, capped at ``steps_per_iteration`` steps; a trailing batch of one image
        is skipped (BatchNorm cannot train on it)."""
        x, y = self._x["train"], self._y["train"]
        n, cap, steps = x.shape[0], self.options["steps_per_iteration"], 0
        for _ in range(int(self.options["epochs_per_iteration"])):
            order = torch.randperm(n, generator=self.generator)
            if self._device.type == "cuda":
                order = order.pin_memory().to(self._device, non_blocking=True)
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                if idx.numel() == 1 and n > 1:
                    continue
                if cap is not None and steps >= int(cap):
                    return
                yield (self._inputs(x.index_select(0, idx), True), y.index_select(0, idx)), \
                    idx.numel()
                steps += 1

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:  # fused too
        logits = self.model(batch[0])
        return {"loss": F.cross_entropy(logits, batch[1]),
                "train_accuracy": logits.argmax(1) == batch[1]}

    def _eval_batches(self, split: str = "val") -> Iterator[tuple[tuple[torch.Tensor, ...], int]]:
        x, y, step = self._x[split], self._y[split], int(self.options["eval_batch_size"])
        for start in range(0, x.shape[0], step):
            labels = y[start:start + step]
            yield (self._inputs(x[start:start + step], False), labels), labels.numel()

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
        """Per-image accuracy and cross-entropy (in float32 whatever the autocast)."""
        logits = self.model(batch[0])
        return {"accuracy": logits.argmax(1) == batch[1],
                "loss": F.cross_entropy(logits.float(), batch[1], reduction="none")}

    def get_state(self) -> dict[str, Any]:
        """CPU copies of model, optimiser (incl. momentum buffers) and both RNG streams."""
        return state_to_cpu(self.state_view())

    def state_view(self) -> dict[str, Any]:
        """:meth:`get_state` before the copy: the live tensors, wherever they are."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"data": generator_state(self.generator),
                    "augment": self.aug_rng.get_state()},
            "scaler": self.scaler.state_dict(),  # fp16 loss scale; {} otherwise
            "iteration": int(self.iteration),
            "config": dict(self.config),
        }

    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        """Load a state; ``include_rng=False`` (PBT exploit) keeps this trial's random streams."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise KeyError(f"{self.name}: state is missing {missing}")
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])  # a copy; same optimiser
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        if include_rng:
            restore_generator(self.generator, state["rng"]["data"])
            self.aug_rng.set_state(state["rng"]["augment"])
        self.iteration = int(state["iteration"])
        self.apply_hyperparameters(state["config"])
