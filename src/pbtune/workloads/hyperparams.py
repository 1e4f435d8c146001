"""Where a tunable hyperparameter goes in a :class:`TorchWorkload`'s optimisers, set in place.

Why: PBT's explore changes hyperparameters between segments of a live trial. Rebuilding the
optimiser would drop its momentum buffers or Adam moments, so values are written into the
existing param groups. Two things are easy to get wrong by hand and are done here once:

* **Routing.** ``lr``, ``momentum``, ``weight_decay``, ``eps``, ``beta1``/``beta2`` (the two
  halves of Adam's ``betas``) and the other standard param-group keys go to every optimiser by
  default; ``param_group_keys = {"lr_g": "generator:lr"}`` sends a hyperparameter to one named
  optimiser's key (a list sends it to several). A standard key an optimiser lacks (``momentum``
  on Adam) is an error naming the keys it has, not a value silently added and ignored.
* **LR schedulers.** A scheduler computes the lr from its ``base_lrs``; setting only the param
  group's ``lr`` is undone at its next step, and restoring a donor's scheduler state brings back
  the donor's base. So a new ``lr`` becomes the scheduler's base lr (and the group's
  ``initial_lr``), and the current lr is rescaled to keep the schedule's position: warm-up at 30 %
  stays at 30 % of the new base.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from pbtune.workloads._torch_utils import write_group_value

__all__ = ["OPTIMIZER_KEYS", "set_hyperparameter", "targets"]

#: Hyperparameter names routed to the optimisers' param groups unless mapped otherwise.
OPTIMIZER_KEYS = frozenset({"lr", "momentum", "weight_decay", "dampening", "eps", "alpha", "rho",
                            "lr_decay", "beta1", "beta2", "initial_accumulator_value"})
_BETAS = {"beta1": 0, "beta2": 1}


def targets(name: str, mapping: Mapping[str, str | Sequence[str]],
            optimizers: Mapping[str, torch.optim.Optimizer]) -> list[tuple[str, str]] | None:
    """``[(optimizer name, param-group key), ...]`` for hyperparameter ``name``; None when it
    is not an optimiser setting (batch size, a custom hook's value)."""
    spec = mapping.get(name)
    if spec is None:
        return [(opt, name) for opt in optimizers] if name in OPTIMIZER_KEYS else None
    out = []
    for item in [spec] if isinstance(spec, str) else list(spec):
        opt, sep, key = item.rpartition(":")
        if not sep:
            out.extend((o, key) for o in optimizers)
        elif opt in optimizers:
            out.append((opt, key))
        else:
            raise KeyError(f"param_group_keys[{name!r}] = {item!r} names optimizer {opt!r}; "
                           f"the optimizers are {sorted(optimizers)}")
    return out


def set_hyperparameter(optimizer: torch.optim.Optimizer, key: str, value: float,
                       schedulers: Iterable[Any] = ()) -> None:
    """Write ``value`` into every param group of ``optimizer`` under ``key``, in place."""
    schedulers = [s for s in schedulers if getattr(s, "optimizer", None) is optimizer]
    for index, group in enumerate(optimizer.param_groups):
        if key in _BETAS:
            _check_has(optimizer, group, "betas", key)
            betas = list(group["betas"])
            betas[_BETAS[key]] = value
            group["betas"] = tuple(betas)
            continue
        _check_has(optimizer, group, key, key)
        if key == "lr" and schedulers:
            _set_scheduled_lr(group, index, value, schedulers)
        else:
            write_group_value(group, key, value)


def _set_scheduled_lr(group: dict[str, Any], index: int, value: float,
                      schedulers: list[Any]) -> None:
    base = float(group.get("initial_lr", schedulers[0].base_lrs[index]))
    current = float(group["lr"])
    position = current / base if base else 1.0  # where the schedule is (1.0 = at its base)
    group["initial_lr"] = value
    for scheduler in schedulers:
        scheduler.base_lrs[index] = value
        last = getattr(scheduler, "_last_lr", None)
        if last is not None and index < len(last):
            last[index] = value * position
    write_group_value(group, "lr", value * position)


def _check_has(optimizer: torch.optim.Optimizer, group: Mapping[str, Any], key: str,
               name: str) -> None:
    if key not in group:
        valid = sorted(k for k in group if k != "params")
        raise KeyError(f"{type(optimizer).__name__} param groups have no {key!r} (for "
                       f"hyperparameter {name!r}); valid: {valid}")
