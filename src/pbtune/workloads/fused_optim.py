"""SGD and Adam/AdamW over stacked (K, ...) parameters, each member with its own hyperparameters.

Why not K torch optimisers on views: K small optimiser steps cost K times the kernel launches
and Python overhead that fusion removes from the forward and backward passes. Here one step
updates every member's slice with broadcast per-member tensors (lr, momentum, dampening,
weight decay; betas, eps), by the formulas of ``torch.optim.SGD`` and ``torch.optim.Adam``
(single-tensor, non-capturable), so a member's weights and optimiser state match its unfused
twin's to float rounding. The state is read from, and written back to, each member's own
optimiser, in the layout that optimiser keeps (``momentum_buffer``; ``step``, ``exp_avg``,
``exp_avg_sq``): a member taken out of its group continues unfused as if it had never been in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["FusedOptimizer", "optimizer_key"]

_FLAGS = ("nesterov", "maximize", "amsgrad", "differentiable", "capturable",
          "decoupled_weight_decay")


def _kind(optimizer: Any) -> str | None:
    if type(optimizer) is torch.optim.SGD:
        return "sgd"
    if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        return "adam"
    return None


def optimizer_key(optimizer: Any) -> tuple[Any, ...] | None:
    """What members' optimisers must share to step as one, or None (not implemented here)."""
    kind = _kind(optimizer)
    if kind is None or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    flags = tuple(bool(group.get(f, False)) for f in _FLAGS)
    if group.get("maximize") or group.get("amsgrad") or group.get("differentiable"):
        return None
    decoupled = type(optimizer) is torch.optim.AdamW or bool(group.get("decoupled_weight_decay"))
    return (kind, flags, decoupled)


class FusedOptimizer:
    """Steps the stacked parameters ``params`` (name ``m.<param name>`` → (K, ...)) of the
    members whose optimisers are ``optimizers`` and models ``models``; :meth:`write_back`
    returns the state to those optimisers."""

    def __init__(self, optimizers: Sequence[Any], models: Sequence[nn.Module],
                 params: dict[str, torch.Tensor]) -> None:
        self.optimizers = list(optimizers)
        self.kind = _kind(self.optimizers[0])
        self.decoupled = optimizer_key(self.optimizers[0])[2]  # type: ignore[index]
        self.nesterov = bool(self.optimizers[0].param_groups[0].get("nesterov", False))
        names = [n[2:] for n in params]
        self.member_params = [[dict(m.named_parameters())[n] for n in names] for m in models]
        groups = [opt.param_groups[0] for opt in self.optimizers]
        device = next(iter(params.values())).device

        def per_member(get: Any) -> torch.Tensor:
            return torch.tensor([float(get(g)) for g in groups], dtype=torch.float64,
                                device=device)

        self.lr = per_member(lambda g: g["lr"])
        self.wd = per_member(lambda g: g["weight_decay"])
        if self.kind == "sgd":
            self.momentum = per_member(lambda g: g["momentum"])
            self.dampening = per_member(lambda g: g["dampening"])
            self.bufs = [self._gather(i, "momentum_buffer", p) for i, p in
                         enumerate(params.values())]
        else:
            self.beta1 = per_member(lambda g: g["betas"][0])
            self.beta2 = per_member(lambda g: g["betas"][1])
            self.eps = per_member(lambda g: g["eps"])
            self.avg = [self._gather(i, "exp_avg", p) for i, p in enumerate(params.values())]
            self.avg_sq = [self._gather(i, "exp_avg_sq", p) for i, p in enumerate(params.values())]
            self.steps = [self._steps(i, device) for i in range(len(params))]

    def _gather(self, i: int, key: str, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stacked state, (K,) bool: the member had it) for parameter ``i``."""
        have = []
        out = torch.zeros_like(stacked, memory_format=torch.contiguous_format).detach()
        for k, opt in enumerate(self.optimizers):
            value = opt.state.get(self.member_params[k][i], {}).get(key)
            have.append(value is not None)
            if value is not None:
                out[k].copy_(value)
        return out, torch.tensor(have, device=stacked.device)

    def _steps(self, i: int, device: torch.device) -> torch.Tensor:
        return torch.tensor([float(opt.state.get(self.member_params[k][i], {}).get("step", 0.0))
                             for k, opt in enumerate(self.optimizers)], dtype=torch.float64,
                            device=device)

    @staticmethod
    def _b(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(K,) → (K, 1, ..., 1) to broadcast over one stacked parameter."""
        shaped = values.view(-1, *([1] * (like.dim() - 1)))
        return shaped if shaped.dtype == torch.bool else shaped.to(like.dtype)

    @torch.no_grad()
    def step(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if g is None:  # unused by the loss: torch's optimisers skip it too
                continue
            if self.kind == "sgd":
                self._sgd(i, p, g)
            else:
                self._adam(i, p, g)

    def _sgd(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
        b = self._b
        g = g + b(self.wd, p) * p
        buf, have = self.bufs[i]
        uses = self.momentum != 0
        # torch: the first step with momentum starts the buffer at the gradient; a member
        # without momentum steps on its gradient and keeps any old buffer untouched.
        new = torch.where(b(have & uses, p),
                          buf * b(self.momentum, p) + b(1 - self.dampening, p) * g, g)
        self.bufs[i] = (torch.where(b(uses, p), new, buf), have | uses)
        direction = g + b(self.momentum, p) * new if self.nesterov else new
        p.sub_(b(self.lr, p) * torch.where(b(uses, p), direction, g))

    def _adam(self, i: int, p: torch.Tensor, g: torch.Tensor) -> None:
        b = self._b
        self.steps[i] += 1
        if self.decoupled:
            p.mul_(1 - b(self.lr * self.wd, p))
        else:
            g = g + b(self.wd, p) * p
        avg, _ = self.avg[i]
        avg_sq, _ = self.avg_sq[i]
        avg.lerp_(g, b(1 - self.beta1, p))
        avg_sq.mul_(b(self.beta2, p)).addcmul_(g * b(1 - self.beta2, p), g)
        step = self.steps[i]
        bc1 = 1 - self.beta1 ** step
        bc2_sqrt = (1 - self.beta2 ** step).sqrt()
        denom = (avg_sq.sqrt() / b(bc2_sqrt, p)) + b(self.eps, p)
        p.sub_(b(self.lr / bc1, p) * avg / denom)
        self.avg[i] = (avg, torch.ones_like(self.avg[i][1]))
        self.avg_sq[i] = (avg_sq, torch.ones_like(self.avg_sq[i][1]))

    def write_back(self) -> None:
        """Each member's optimiser state, as its own optimiser would hold it after these steps."""
        for k, opt in enumerate(self.optimizers):
            for i, param in enumerate(self.member_params[k]):
                if self.kind == "sgd":
                    buf, have = self.bufs[i]
                    if bool(have[k]):
                        self._put(opt, param, "momentum_buffer", buf[k])
                elif self.steps[i][k] > 0:
                    self._put(opt, param, "exp_avg", self.avg[i][0][k])
                    self._put(opt, param, "exp_avg_sq", self.avg_sq[i][0][k])
                    opt.state[param]["step"] = torch.tensor(float(self.steps[i][k]))

    @staticmethod
    def _put(opt: Any, param: torch.Tensor, key: str, value: torch.Tensor) -> None:
        state = opt.state[param]
        old = state.get(key)
        if old is not None and old.shape == value.shape:
            old.copy_(value)
        else:
            state[key] = value.detach().clone()
