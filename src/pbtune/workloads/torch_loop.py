"""The optimiser-stepping and metric-averaging halves of :class:`TorchWorkload`'s loop.

Why separate: both are easy to get subtly wrong and are the same for every model. The stepper
does loss scaling (fp16), gradient accumulation, one scaler update per optimiser step even with
several optimisers, freeing gradients between steps, and stepping LR schedulers at the declared
interval. The metric sums average a batch's values over the whole epoch or validation set
exactly: a scalar is the batch's mean, a per-sample vector is summed in float64 (so an accuracy
from booleans is an exact ratio, as on a results table it should be).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from pbtune.errors import UserError
from pbtune.workloads.distributed import average_gradients, sum_over_gang

__all__ = ["TORCH_OPTIONS", "MetricSums", "Stepper", "as_metrics", "check_options", "unpack"]

#: Options every TorchWorkload has (merged under a subclass's own ``default_options``).
TORCH_OPTIONS: dict[str, Any] = {
    "epochs_per_iteration": 1,  # an iteration is this many epochs ...
    "steps_per_iteration": None,  # ... or exactly this many optimiser steps, across epochs
    "accumulation_steps": 1,  # micro-batches per optimiser step (gradient accumulation)
    "batch_size": 64,  # when batch_size is not a tunable hyperparameter
    "eval_batch_size": 1024,  # samples per evaluation forward pass
    "drop_last": False,  # skip an epoch's last partial batch (BatchNorm cannot train on one)
    "threads": None,  # torch intra-op threads; None leaves torch's setting alone
    "slowdown": 1.0,  # ≥ 1: sleep (slowdown - 1) × compute time per iteration (benchmarks)
}
_POSITIVE = ("epochs_per_iteration", "accumulation_steps", "batch_size", "eval_batch_size")


def check_options(name: str, opts: dict[str, Any]) -> None:
    """A one-line UserError for a bad value of one of :data:`TORCH_OPTIONS`."""
    for key in (*_POSITIVE, "steps_per_iteration", "threads"):
        value = opts[key]
        if (value is not None or key in _POSITIVE) and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"{name}: option {key} must be an integer >= 1"
                            f"{'' if key in _POSITIVE else ' or null'}, got {value!r}")
    if float(opts["slowdown"]) < 1.0:
        raise UserError(f"{name}: slowdown must be >= 1.0, got {opts['slowdown']}")


class Stepper:
    """Backward and optimiser steps for a set of named optimisers sharing one loss scaler."""

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer], schedulers: Iterable[Any],
                 scaler: torch.amp.GradScaler, interval: str, world_size: int = 1) -> None:
        if interval not in ("step", "iteration"):
            raise ValueError(f"scheduler_interval must be 'step' or 'iteration', got {interval!r}")
        self.optimizers = optimizers
        self.schedulers = list(schedulers)
        self.scaler = scaler
        self.interval = interval
        self.pending = 0  # micro-batches accumulated since the last optimiser step
        self.accumulation_steps = 1
        self.world_size = world_size  # > 1: gradients are averaged over the gang before a step

    def start(self) -> None:
        """Before an iteration: no stale gradients."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.pending = 0

    def accumulate(self, loss: Any, accumulation_steps: int, where: str) -> bool:
        """Backward one micro-batch's loss; steps every optimiser after ``accumulation_steps``
        of them. Returns whether it stepped."""
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise TypeError(f"{where}: train_step must return the loss as a tensor that requires "
                            "grad (or set manual_optimization = True and call backward_step)")
        self.accumulation_steps = accumulation_steps
        self.scaler.scale(loss / accumulation_steps if accumulation_steps > 1 else loss).backward()
        self.pending += 1
        if self.pending < accumulation_steps:
            return False
        self.step()
        return True

    def step(self) -> None:
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        for opt in self.optimizers.values():
            self._sync(opt)
            self.scaler.step(opt)
        self.scaler.update()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)  # also frees the grads between iterations
        self.pending = 0
        # fp16: a step with inf/NaN gradients is skipped and the scale lowered; the schedule
        # must not advance for a step that did not happen (as Hugging Face's Trainer does).
        if scale is None or self.scaler.get_scale() >= scale:
            self.tick("step")

    def backward_step(self, loss: torch.Tensor, optimizer: str) -> None:
        """Manual optimisation: zero one optimiser's grads, backward (scaled), step it."""
        if optimizer not in self.optimizers:
            raise KeyError(f"no optimizer {optimizer!r}; the optimizers are "
                           f"{sorted(self.optimizers)}")
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._sync(opt)
        self.scaler.step(opt)

    def _sync(self, opt: torch.optim.Optimizer) -> None:
        """In a gang: every rank steps with the gang's mean gradient (distributed.py)."""
        if self.world_size > 1:
            average_gradients((p for g in opt.param_groups for p in g["params"]),
                              self.world_size)

    def manual_step_done(self) -> None:
        """After a manual ``train_step``: one scaler update for all its optimiser steps."""
        if self.scaler.is_enabled():
            self.scaler.update()
        self.tick("step")

    def finish(self) -> None:
        """End of an iteration: step a partial accumulation (its gradient scaled back to a mean
        over the micro-batches it has, not 1/accumulation_steps of one), then per-iteration
        schedulers."""
        if self.pending:
            factor = self.accumulation_steps / self.pending
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    for param in group["params"]:
                        if param.grad is not None:
                            param.grad.mul_(factor)
            self.step()
        self.tick("iteration")

    def tick(self, interval: str) -> None:
        if interval == self.interval:
            for scheduler in self.schedulers:
                scheduler.step()


class MetricSums:
    """Running sums of a loop's metrics; :meth:`means` divides by the samples seen."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}  # on the training device: no sync per batch
        self.seen = 0

    def add(self, out: Mapping[str, Any], n: int) -> None:
        for key, value in out.items():
            if isinstance(value, bool | str | bytes) or value is None or not isinstance(
                    value, torch.Tensor | float | int | np.number | np.ndarray):
                raise TypeError(f"metric {key!r} is a {type(value).__name__}; return a number, "
                                f"a one-element tensor or one value per sample ({n})")
            value = torch.as_tensor(value).detach()
            if value.dim() > 0 and value.numel() == n:
                total = value.double().sum()
            elif value.numel() == 1:
                total = value.double().reshape(()) * n
            else:
                raise ValueError(f"metric {key!r} has shape {tuple(value.shape)}; return a "
                                 f"scalar or one value per sample ({n})")
            self.sums[key] = self.sums[key] + total if key in self.sums else total
        self.seen += n

    def means(self, world_size: int = 1) -> dict[str, float]:
        """Means over the samples seen; in a gang (``world_size`` > 1) over every rank's, as
        one process training the whole batch reports them."""
        keys = sorted(self.sums)
        if world_size > 1:
            device = self.sums[keys[0]].device if keys else "cpu"
            totals = torch.stack([*(self.sums[k] for k in keys),
                                  torch.tensor(float(self.seen), dtype=torch.float64,
                                               device=device)])
            sum_over_gang(totals, world_size)
            return {k: float(totals[i].item()) / max(float(totals[-1].item()), 1.0)
                    for i, k in enumerate(keys)}
        return {k: float(self.sums[k].item()) / max(self.seen, 1) for k in keys}


def as_metrics(out: Any, method: str) -> Mapping[str, Any]:
    """A step's return value as a metrics dict (a bare tensor is the loss)."""
    if isinstance(out, torch.Tensor):
        return {"loss": out}
    if not isinstance(out, Mapping):
        raise TypeError(f"{method} must return a tensor or a dict of metrics, got "
                        f"{type(out).__name__}")
    return out


def unpack(tensors: list[torch.Tensor]) -> Any:
    """What a step receives: one tensor, or a tuple in the declared array order."""
    return tensors[0] if len(tensors) == 1 else tuple(tensors)
