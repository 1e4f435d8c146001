"""A trial's own randomness for :class:`~pbtune.workloads.torch_workload.TorchWorkload`.

Why: a worker process runs many trials, one segment after another, in an order that depends on
scheduling. Anything a trial draws from a process-wide stream (dropout, ``torch.randn`` noise for
a GAN, random augmentation) would then depend on which trials ran before it on that worker, and
a resumed or moved trial would not continue as it would have. So each trial owns two streams
whose states travel in its state and stay behind on exploit (a copied trial keeps its own data
order and noise, not its donor's):

* :class:`BatchOrder`: the shuffled order of the training set, resumable mid-epoch (a fine-tune
  whose iteration is N optimiser steps stops anywhere in an epoch);
* :class:`OwnedGlobalRng`: torch's global CPU (and CUDA) generator, swapped in while the trial
  trains or evaluates and swapped back out afterwards, so user code may simply call
  ``torch.randn`` or use ``nn.Dropout``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from pbtune.errors import UserError
from pbtune.workloads._torch_utils import (
    generator_state,
    load_optimizer_state,
    restore_generator,
    seeded_generator,
)

__all__ = ["BatchOrder", "OwnedGlobalRng", "TrainingObjects", "named_objects", "unpack_states",
           "view_states"]

_GLOBAL_SEED_OFFSET = 1_000_003  # the global stream must differ from the data-order stream


class BatchOrder:
    """Minibatch indices over ``n`` samples, reshuffled every epoch from a private generator.

    The state is the generator's state at the start of the current epoch plus the position in
    it: the epoch's permutation is drawn again on restore rather than stored (8 bytes per sample
    for a large training set).
    """

    def __init__(self, n: int, seed: int, *, drop_last: bool = False) -> None:
        self.n = int(n)
        self.drop_last = drop_last
        self.generator = seeded_generator(seed)  # CPU: randperm of CPU indices
        self._order: torch.Tensor | None = None
        self._epoch_start: torch.Tensor | None = None
        self._cursor = 0

    def next(self, batch_size: int) -> torch.Tensor | None:
        """The next batch's indices (CPU int64), or None once the epoch is over (the call after
        that starts the next epoch)."""
        if self._order is None:
            self._epoch_start = generator_state(self.generator)
            self._order = torch.randperm(self.n, generator=self.generator)
            self._cursor = 0
        left = self.n - self._cursor
        if left <= 0 or (self.drop_last and left < batch_size and self._cursor > 0):
            self._order = self._epoch_start = None
            return None
        idx = self._order[self._cursor:self._cursor + batch_size]
        self._cursor += idx.numel()
        return idx

    @property
    def position(self) -> int:
        """Samples drawn in the current epoch (0 between epochs)."""
        return self._cursor if self._order is not None else 0

    def get_state(self) -> dict[str, Any]:
        return {"generator": generator_state(self.generator), "cursor": self._cursor,
                "epoch_start": None if self._epoch_start is None else self._epoch_start.clone()}

    def set_state(self, state: Any) -> None:
        """Restore :meth:`get_state`; a bare generator state (older checkpoints) also works."""
        if isinstance(state, torch.Tensor):
            state = {"generator": state, "cursor": 0, "epoch_start": None}
        if state.get("epoch_start") is None:
            restore_generator(self.generator, state["generator"])
            self._order = self._epoch_start = None
            self._cursor = 0
            return
        restore_generator(self.generator, state["epoch_start"])
        self._epoch_start = generator_state(self.generator)
        self._order = torch.randperm(self.n, generator=self.generator)  # → the saved generator
        self._cursor = int(state["cursor"])


class OwnedGlobalRng:
    """torch's global generator(s) as this trial's private stream (see the module docstring)."""

    def __init__(self, seed: int, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.cuda_index = device.index if device.index is not None else (
            torch.cuda.current_device() if self.cuda else None)
        self.cpu_state = seeded_generator(seed + _GLOBAL_SEED_OFFSET).get_state()
        self.cuda_state = (seeded_generator(seed + _GLOBAL_SEED_OFFSET, device).get_state()
                           if self.cuda else None)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Run a block with this trial's streams as torch's global ones; the process's own
        streams are back afterwards, even if the block raises."""
        saved_cpu = torch.get_rng_state()
        torch.set_rng_state(self.cpu_state)
        saved_cuda = None
        if self.cuda:
            saved_cuda = torch.cuda.get_rng_state(self.cuda_index)
            torch.cuda.set_rng_state(self.cuda_state, self.cuda_index)
        try:
            yield
        finally:
            self.cpu_state = torch.get_rng_state()
            torch.set_rng_state(saved_cpu)
            if self.cuda:
                self.cuda_state = torch.cuda.get_rng_state(self.cuda_index)
                torch.cuda.set_rng_state(saved_cuda, self.cuda_index)

    def get_state(self) -> dict[str, torch.Tensor]:
        state = {"cpu": self.cpu_state.clone()}
        if self.cuda_state is not None:
            state["cuda"] = self.cuda_state.clone()
        return state

    def set_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore; a CUDA stream saved on a GPU worker is ignored on a CPU worker, and a state
        from a CPU worker leaves a GPU worker's CUDA stream as it is."""
        self.cpu_state = state["cpu"].detach().to("cpu", dtype=torch.uint8, copy=True)
        if self.cuda and state.get("cuda") is not None:
            self.cuda_state = state["cuda"].detach().to("cpu", dtype=torch.uint8, copy=True)


def named_objects(built: Any, default: str, kind: type, method: str) -> dict[str, Any]:
    """What ``build_model``/``build_optimizer``/``build_scheduler`` returned, by name (a single
    object is named ``default``); anything not a ``kind`` is a one-line UserError."""
    named = dict(built) if isinstance(built, Mapping) else {default: built}
    bad = {k: type(v).__name__ for k, v in named.items() if not isinstance(v, kind)}
    if bad or not named:
        raise UserError(f"{method} must return a {kind.__name__} or a dict of them; got {bad}")
    return named


def view_states(built: Any, named: Mapping[str, Any]) -> Any:
    """The objects' ``state_dict()`` (live tensors): one, or a dict when a dict was built."""
    states = {k: v.state_dict() for k, v in named.items()}
    return states if isinstance(built, Mapping) else next(iter(states.values()))



def unpack_states(built: Any, named: Mapping[str, Any], saved: Any) -> dict[str, Any]:
    """:func:`view_states`'s layout (as copied) by name again."""
    return dict(saved) if isinstance(built, Mapping) else {next(iter(named)): saved}


class TrainingObjects:
    """A :class:`~pbtune.workloads.torch_workload.TorchWorkload`'s models, optimisers and
    schedulers (each as ``build_*`` returned it, and by name) and its loss scaler: their state
    dicts out (live tensors) and in (copied, never aliased).

    Why apart: the layout of a saved trial (a single object's state dict, or a dict of them by
    name) is decided here once, for saving and loading alike.
    """

    def __init__(self, model: Any, optimizer: Any, scheduler: Any, scaler: Any) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.scaler = scaler
        self.models = named_objects(model, "model", torch.nn.Module, "build_model")
        self.optimizers = named_objects(optimizer, "optimizer", torch.optim.Optimizer,
                                        "build_optimizer")
        self.schedulers = {} if scheduler is None else named_objects(
            scheduler, "scheduler", object, "build_scheduler")

    def view(self) -> dict[str, Any]:
        return {"model": view_states(self.model, self.models),
                "optimizer": view_states(self.optimizer, self.optimizers),
                "scheduler": (view_states(self.scheduler, self.schedulers) if self.schedulers
                              else None),
                "scaler": self.scaler.state_dict()}

    def load(self, state: Mapping[str, Any]) -> None:
        for name, saved in unpack_states(self.model, self.models, state["model"]).items():
            self.models[name].load_state_dict(saved)
        saved_opts = unpack_states(self.optimizer, self.optimizers, state["optimizer"])
        for name, saved in saved_opts.items():
            load_optimizer_state(self.optimizers[name], saved)  # a copy; same optimiser
        if self.schedulers and state.get("scheduler") is not None:
            saved_scheds = unpack_states(self.scheduler, self.schedulers, state["scheduler"])
            for name, saved in saved_scheds.items():
                self.schedulers[name].load_state_dict(copy.deepcopy(saved))
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
