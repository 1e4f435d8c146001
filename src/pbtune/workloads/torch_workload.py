"""``pbtune.TorchWorkload``: bring a PyTorch model by writing only what is yours.

Why: a PBT workload must get several delicate things exactly right or PBT silently breaks:
weights seeded per trial without touching the process's RNG, a private data order and noise
stream that resume continues and exploit leaves behind, hyperparameters changed inside the live
optimiser (and its LR scheduler), states that are CPU copies never aliasing the live model,
autocast and loss scaling. Written by hand that is about 130 lines per model. Here a subclass
writes ``load_data`` (numpy arrays, once per node), ``build_model``, ``build_optimizer``,
``train_step(batch)`` (the loss) and ``eval_step(batch)`` (metrics), and this base does the rest
(``docs/workloads.md`` has a complete 30-line example). Full control: override
:meth:`train_epoch` (one iteration) or :meth:`evaluate`; with ``manual_optimization = True`` a
``train_step`` makes its own steps with :meth:`backward_step` (a GAN's two optimisers).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from pbtune.errors import UserError
from pbtune.workloads import hyperparams
from pbtune.workloads._torch_utils import (
    configure_threads,
    seeded_init,
    state_to_cpu,
)
from pbtune.workloads.base import Workload
from pbtune.workloads.distributed import broadcast_buffers, shard, weighted
from pbtune.workloads.precision import autocast_dtype
from pbtune.workloads.shared_data import tensors_of
from pbtune.workloads.torch_loop import (
    TORCH_OPTIONS,
    MetricSums,
    Stepper,
    as_metrics,
    check_options,
    unpack,
)
from pbtune.workloads.torch_state import (
    BatchOrder,
    OwnedGlobalRng,
    TrainingObjects,
    named_objects,
)

__all__ = ["TorchWorkload"]



class TorchWorkload(Workload):
    """A :class:`Workload` whose engine-facing half is written once, for any PyTorch model."""

    precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")
    train_arrays: ClassVar[tuple[str, ...]] = ("train_x", "train_y")  # keys of load_data's dict
    eval_arrays: ClassVar[tuple[str, ...]] = ("val_x", "val_y")
    #: hyperparameter → ``"key"`` (every optimiser) or ``"optimizer_name:key"`` (or a list).
    param_group_keys: ClassVar[Mapping[str, str | Sequence[str]]] = {}
    manual_optimization: ClassVar[bool] = False  # True: train_step calls backward_step itself
    scheduler_interval: ClassVar[str] = "step"  # step the LR scheduler(s) per "step"/"iteration"
    #: True: K trials may train as one batched model (resources.members_per_worker, fusion.py);
    #: train_step and eval_step then run under vmap: no randomness, tensors only.
    fusible: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Fill what a short subclass leaves out: the base options, the hyperparameter names
        (those of ``default_config``) and the default metric (the first one)."""
        super().__init_subclass__(**kwargs)
        cls.default_options = {**TORCH_OPTIONS, **cls.default_options}
        if not cls.hyperparameters:
            cls.hyperparameters = tuple(cls.default_config)
        if not cls.default_metric and cls.metrics:
            cls.default_metric = next(iter(cls.metrics))

    # ---- what a subclass writes ------------------------------------------------------------
    @abstractmethod
    def build_model(self, options: Mapping[str, Any]) -> nn.Module | Mapping[str, nn.Module]:
        """The model (or ``{"generator": G, "discriminator": D}``); built under the trial's seed,
        then moved to the trial's device."""

    @abstractmethod
    def build_optimizer(self, model: Any, config: Mapping[str, Any]) -> Any:
        """An optimiser for ``model`` (or a dict of them); hyperparameters are applied after."""

    def build_scheduler(self, optimizer: Any, options: Mapping[str, Any]) -> Any:
        """Optional LR scheduler(s) for ``optimizer``; its state travels with the trial."""
        return None

    def train_step(self, batch: Any) -> torch.Tensor | Mapping[str, Any]:
        """One minibatch: return the loss, or ``{"loss": ..., "other_metric": ...}``."""
        raise NotImplementedError(f"{type(self).__name__} must define train_step(batch) or "
                                  "override train_epoch()")

    def eval_step(self, batch: Any) -> Mapping[str, Any]:
        """Metrics of one validation batch: scalars (batch means) or per-sample tensors."""
        raise NotImplementedError(f"{type(self).__name__} must define eval_step(batch) or "
                                  "override evaluate()")

    def on_hyperparameters(self, changed: Mapping[str, Any]) -> None:
        """Hook for hyperparameters that are not optimiser settings (all are in ``self.config``)."""

    def extra_state(self) -> dict[str, Any]:
        """Anything else of the trial's to save (CPU tensors, numbers)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`extra_state`."""

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def resolve_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Merge over the defaults; a typo or bad value is a one-line UserError."""
        opts = cls.merge_options(options)
        check_options(cls.name, opts)
        return opts

    def __init__(self, config: Mapping[str, Any], *, data: Any = None,
                 options: Mapping[str, Any] | None = None, seed: int = 0, device: str = "cpu",
                 precision: str = "fp32") -> None:
        self.check_hyperparameters(config)
        super().__init__(config, data=data, options=options, seed=seed, device=device,
                         precision=precision)
        self.options = self.resolve_options(options)
        if precision not in self.precisions:
            raise UserError(f"{self.name}: precision {precision!r} is not one of "
                            f"{list(self.precisions)}")
        configure_threads(self.options["threads"])
        self._device = torch.device(device)
        self._amp_dtype = autocast_dtype(precision)
        if data is None:
            data = self.load_data(self.options)
        self.train_data = tensors_of(self.name, data, self.train_arrays, self._device)
        self.eval_data = tensors_of(self.name, data, self.eval_arrays, self._device)
        with seeded_init(seed):
            self.model = self.build_model(self.options)
        self.models = named_objects(self.model, "model", nn.Module, "build_model")
        for module in self.models.values():
            module.to(self._device)
        self.optimizer = self.build_optimizer(self.model, self.config)
        self.scheduler = self.build_scheduler(self.optimizer, self.options)
        self.scaler = torch.amp.GradScaler(self._device.type, enabled=precision == "fp16")
        self._objects = TrainingObjects(self.model, self.optimizer, self.scheduler, self.scaler)
        self.optimizers, self.schedulers = self._objects.optimizers, self._objects.schedulers
        self._stepper = Stepper(self.optimizers, self.schedulers.values(), self.scaler,
                                self.scheduler_interval, self.world_size)
        self._order = BatchOrder(self.train_data[0].shape[0], seed,
                                 drop_last=bool(self.options["drop_last"]))
        self.generator = self._order.generator  # the data order's (CPU) stream
        self._rng = OwnedGlobalRng(seed, self._device)
        self.batch_size = int(self.options["batch_size"])
        self.accumulation_steps = int(self.options["accumulation_steps"])
        self.apply_hyperparameters(self.config)

    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        """In place: the same optimiser objects and buffers; batch size from the next batch."""
        self.check_hyperparameters(config)
        custom = {}
        for name, value in config.items():
            if name in ("batch_size", "accumulation_steps"):
                if isinstance(value, bool) or int(value) != value or int(value) < 1:
                    raise ValueError(f"{self.name}: {name} must be an integer >= 1, got {value}")
                setattr(self, name, int(value))
                self.config[name] = int(value)
                continue
            routes = hyperparams.targets(name, self.param_group_keys, self.optimizers)
            if routes is None:
                custom[name] = value
            for opt_name, key in routes or ():
                hyperparams.set_hyperparameter(self.optimizers[opt_name], key, float(value),
                                               self.schedulers.values())
            self.config[name] = value if routes is None else float(value)
        if custom:
            self.on_hyperparameters(custom)

    # ---- training --------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        """The trial's precision as a context (no-op for fp32)."""
        return torch.autocast(self._device.type, dtype=self._amp_dtype or torch.float32,
                              enabled=self._amp_dtype is not None)

    def backward_step(self, loss: torch.Tensor, optimizer: str = "optimizer") -> None:
        """For ``manual_optimization``: zero one optimiser's grads, backward (scaled), step it."""
        self._stepper.backward_step(loss, optimizer)

    def train(self, iterations: int = 1) -> dict[str, float]:
        """Train; returns the last iteration's mean training metrics (NaN returned, not raised)."""
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        result: dict[str, float] = {}
        slowdown = float(self.options["slowdown"])
        with self._rng.active():
            for _ in range(iterations):
                start = time.perf_counter()
                result = self.train_epoch()
                self.iteration += 1
                if slowdown > 1.0:  # simulate a node `slowdown` times slower than this one
                    time.sleep((slowdown - 1.0) * (time.perf_counter() - start))
        return result

    def _draws(self, steps: list[int]) -> Any:
        """One iteration's batches from the trial's data order: ``epochs_per_iteration`` epochs,
        or until ``steps[0]`` (the caller counts its optimiser steps there) reaches
        ``steps_per_iteration``. Yields (tensors, samples, weight): in a gang every rank draws
        the same global batch and gets its slice."""
        cap, epochs_left = self.options["steps_per_iteration"], self.options["epochs_per_iteration"]
        while cap is None or steps[0] < cap:
            idx = self._order.next(self.batch_size * self.world_size)
            if idx is None:  # an epoch ended
                epochs_left -= 1
                if cap is None and epochs_left <= 0:
                    return
                continue
            if idx.numel() < self.world_size:
                continue  # a last batch too small to give every rank a sample
            idx, weight = shard(idx, self.rank, self.world_size)
            idx = idx.to(self._device)
            yield [t.index_select(0, idx) for t in self.train_data], idx.numel(), weight

    def train_epoch(self) -> dict[str, float]:
        """One iteration: ``epochs_per_iteration`` epochs, or ``steps_per_iteration`` steps."""
        sums, steps = MetricSums(), [0]
        for module in self.models.values():
            module.train()
        self._stepper.start()
        for tensors, n, weight in self._draws(steps):
            with self.autocast():
                out = as_metrics(self.train_step(unpack(tensors)), "train_step")
            if self.manual_optimization:
                self._stepper.manual_step_done()
                steps[0] += 1
            elif self._stepper.accumulate(weighted(out.get("loss"), weight),
                                          self.accumulation_steps, self.name):
                steps[0] += 1
            sums.add(out, n)
        self._stepper.finish()
        broadcast_buffers(self.models.values(), self.world_size)
        return sums.means(self.world_size)

    def _eval_batches(self) -> Any:
        """The validation set in ``eval_batch_size`` batches: (tensors, samples)."""
        n, step = self.eval_data[0].shape[0], int(self.options["eval_batch_size"])
        for start in range(0, n, step):
            yield tuple(t[start:start + step] for t in self.eval_data), min(step, n - start)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every metric of :meth:`eval_step`, averaged over the whole validation set."""
        for module in self.models.values():
            module.eval()
        sums = MetricSums()
        with self._rng.active():
            for tensors, n in self._eval_batches():
                with self.autocast():
                    sums.add(as_metrics(self.eval_step(unpack(list(tensors))), "eval_step"), n)
        return sums.means()

    # ---- fusion (pbtune.workloads.fusion) ------------------------------------------------------
    def fusion(self) -> Any:
        """This trial as a fused group's member (:class:`~pbtune.workloads.fusion.FusionView`),
        or None where fusion does not go (see :func:`~pbtune.workloads.fusion.torch_member`)."""
        from pbtune.workloads.fusion import torch_member

        return torch_member(self, self._draws, self._eval_batches,
                            (self._order.position, str(self._device)))

    # ---- state -----------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """CPU copies: model(s), optimiser(s), scheduler(s), loss scaler, both RNG streams."""
        return state_to_cpu(self.state_view())

    def state_view(self) -> dict[str, Any]:
        """:meth:`get_state` before the copy: the live tensors, wherever they are."""
        return {**self._objects.view(),
                "rng": {"order": self._order.get_state(), "torch": self._rng.get_state()},
                "iteration": int(self.iteration), "config": dict(self.config),
                "extra": self.extra_state()}

    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        """Load a state (copied in, never aliased); ``include_rng=False`` (exploit) keeps this
        trial's data order and noise stream. The config is applied last, so a restored
        scheduler cannot bring back the donor's learning rate."""
        missing = [k for k in ("model", "optimizer", "iteration", "config") if k not in state]
        if missing:
            raise KeyError(f"{self.name}: state is missing {missing}")
        self._objects.load(state)
        if include_rng:
            rng = state["rng"]
            self._order.set_state(rng["order"] if isinstance(rng, Mapping) else rng)
            if isinstance(rng, Mapping) and rng.get("torch") is not None:
                self._rng.set_state(rng["torch"])
        self.iteration = int(state["iteration"])
        self.load_extra_state(state.get("extra") or {})
        self.apply_hyperparameters(state["config"])
