"""SGD and Adam/AdamW over a fused group's parameters, each member with its own hyperparameters.

Why not K torch optimisers on views: K small optimiser steps cost K times the kernel launches
and Python overhead that fusion removes from the forward and backward passes. Here the group's
parameters are one (K, P) tensor (:class:`FlatParams`: member k's parameters flattened into row
k) and one step is a handful of whole-tensor operations with per-member (K, 1) coefficients
(lr, momentum, dampening, weight decay; betas, eps), by the formulas of ``torch.optim.SGD`` and
``torch.optim.Adam`` (single-tensor, non-capturable), so a member's weights and optimiser state
match its unfused twin's to float rounding. The state is read from, and written back to, each
member's own optimiser, in the layout that optimiser keeps (``momentum_buffer``; ``step``,
``exp_avg``, ``exp_avg_sq``): a member taken out of its group continues unfused as if it had
never been in one. (A parameter the loss does not use gets a zero gradient here, where torch
skips it: weight decay still shrinks it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["FlatParams", "FusedOptimizer", "optimizer_key"]


def optimizer_key(optimizer: Any) -> tuple[Any, ...] | None:
    """What members' optimisers must share to step as one, or None (not implemented here)."""
    if len(getattr(optimizer, "param_groups", ())) != 1:
        return None
    group = optimizer.param_groups[0]
    if group.get("maximize") or group.get("amsgrad") or group.get("differentiable"):
        return None
    if type(optimizer) is torch.optim.SGD:
        return ("sgd", bool(group.get("nesterov")))
    if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        decoupled = type(optimizer) is torch.optim.AdamW or bool(
            group.get("decoupled_weight_decay"))
        return ("adam", decoupled)
    return None


class FlatParams:
    """The members' parameters as one (K, P) leaf; :meth:`views` gives them by name, (K, ...)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        named = [dict(m.named_parameters()) for m in models]
        self.names = list(named[0])
        self.members = [[p[n] for n in self.names] for p in named]  # the members' own
        self.shapes = [tuple(p.shape) for p in self.members[0]]
        self.sizes = [p.numel() for p in self.members[0]]
        with torch.no_grad():
            self.flat = torch.stack([torch.cat([p.reshape(-1) for p in ps])
                                     for ps in self.members]).requires_grad_()

    def views(self) -> dict[str, torch.Tensor]:
        k = self.flat.shape[0]
        parts = torch.split(self.flat, self.sizes, dim=1)
        return {f"m.{n}": part.view(k, *shape)
                for n, part, shape in zip(self.names, parts, self.shapes, strict=True)}

    def rows(self, values: torch.Tensor, k: int) -> list[torch.Tensor]:
        """Member ``k``'s row of a (K, P) tensor, split and shaped as its parameters."""
        return [part.view(shape) for part, shape in
                zip(torch.split(values[k], self.sizes), self.shapes, strict=True)]

    @torch.no_grad()
    def write_back(self) -> None:
        for k, params in enumerate(self.members):
            for param, value in zip(params, self.rows(self.flat, k), strict=True):
                param.copy_(value)


class FusedOptimizer:
    """Steps ``flat`` (a :class:`FlatParams`) with the members' ``optimizers``' settings;
    :meth:`write_back` returns the state to those optimisers."""

    def __init__(self, optimizers: Sequence[Any], flat: FlatParams) -> None:
        self.optimizers, self.flat = list(optimizers), flat
        self.kind, self.option = optimizer_key(self.optimizers[0])  # type: ignore[misc]
        groups = [opt.param_groups[0] for opt in self.optimizers]
        self.groups = groups
        device = flat.flat.device
        dtype = flat.flat.dtype  # coefficients round as torch's scalar arguments do
        self._col = lambda xs: torch.tensor(xs, dtype=dtype, device=device).view(-1, 1)
        self.lr = [float(g["lr"]) for g in groups]
        self.wd = [float(g["weight_decay"]) for g in groups]
        self.decay = any(self.wd)
        if self.kind == "sgd":
            self.momentum = [float(g["momentum"]) for g in groups]
            self.dampening = [float(g["dampening"]) for g in groups]
            self.buf, self.have = self._gather("momentum_buffer")
            self._coefficients()
        else:
            self.beta1 = [float(g["betas"][0]) for g in groups]
            self.beta2 = [float(g["betas"][1]) for g in groups]
            self.eps = self._col([float(g["eps"]) for g in groups])
            self.avg, _ = self._gather("exp_avg")
            self.avg_sq, _ = self._gather("exp_avg_sq")
            self.steps = [float(opt.state.get(self.flat.members[k][0], {}).get("step", 0.0))
                          for k, opt in enumerate(self.optimizers)]

    def _gather(self, key: str) -> tuple[torch.Tensor, list[bool]]:
        """(K, P) state (zeros where a member has none yet), and which members have it."""
        out = torch.zeros_like(self.flat.flat, requires_grad=False)
        have = []
        for k, opt in enumerate(self.optimizers):
            values = [opt.state.get(p, {}).get(key) for p in self.flat.members[k]]
            have.append(all(v is not None for v in values))
            for dst, value in zip(self.flat.rows(out, k), values, strict=True):
                if value is not None:
                    dst.copy_(value)
        return out, have

    def _coefficients(self) -> None:
        """SGD's per-member (K, 1) factors for the step, by torch's rules: the first step with
        momentum starts the buffer at the gradient; a member without momentum steps on its
        gradient and leaves any old buffer as it was."""
        uses = [m != 0 for m in self.momentum]
        col = self._col
        self.c_buf = col([(m if h else 0.0) if u else 1.0
                          for m, h, u in zip(self.momentum, self.have, uses, strict=True)])
        self.c_grad = col([(1.0 - d if h else 1.0) if u else 0.0
                           for d, h, u in zip(self.dampening, self.have, uses, strict=True)])
        nesterov = self.option
        # direction = a * g + c * buf
        self.c_dir_g = col([-lr * (1.0 if (nesterov or not u) else 0.0)
                            for lr, u in zip(self.lr, uses, strict=True)])
        self.c_dir_buf = col([-lr * ((m if nesterov else 1.0) if u else 0.0)
                              for lr, m, u in zip(self.lr, self.momentum, uses, strict=True)])
        self.any_g = any(c != 0.0 for c in self.c_dir_g.view(-1).tolist())
        self.wd_col = col(self.wd)
        self.have_next = [h or u for h, u in zip(self.have, uses, strict=True)]

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        """One step of every member, ``grad`` (K, P) (modified in place)."""
        p = self.flat.flat
        if self.kind == "sgd":
            self._sgd(p, grad)
        else:
            self._adam(p, grad)

    def _sgd(self, p: torch.Tensor, g: torch.Tensor) -> None:
        if self.decay:
            g.addcmul_(p, self.wd_col)
        self.buf.mul_(self.c_buf).addcmul_(g, self.c_grad)
        p.addcmul_(self.buf, self.c_dir_buf)
        if self.any_g:
            p.addcmul_(g, self.c_dir_g)
        if self.have_next != self.have:  # after a first step: from now on a running buffer
            self.have = self.have_next
            self._coefficients()

    def _adam(self, p: torch.Tensor, g: torch.Tensor) -> None:
        col = self._col
        self.steps = [s + 1.0 for s in self.steps]
        if self.decay and self.option:  # AdamW: decoupled
            p.mul_(col([1.0 - lr * wd for lr, wd in zip(self.lr, self.wd, strict=True)]))
        elif self.decay:
            g.addcmul_(p, col(self.wd))
        self.avg.lerp_(g, col([1.0 - b for b in self.beta1]))
        self.avg_sq.mul_(col(self.beta2)).addcmul_(
            g * col([1.0 - b for b in self.beta2]), g)
        bc1 = [1.0 - b ** s for b, s in zip(self.beta1, self.steps, strict=True)]
        bc2_sqrt = col([(1.0 - b ** s) ** 0.5 for b, s in zip(self.beta2, self.steps,
                                                              strict=True)])
        denom = (self.avg_sq.sqrt() / bc2_sqrt).add_(self.eps)
        step_size = col([-lr / c for lr, c in zip(self.lr, bc1, strict=True)])
        p.addcmul_(self.avg / denom, step_size)

    def write_back(self) -> None:
        """Each member's optimiser state, as its own optimiser would hold it after these steps."""
        for k, opt in enumerate(self.optimizers):
            params = self.flat.members[k]
            if self.kind == "sgd":
                if self.have[k]:
                    for param, value in zip(params, self.flat.rows(self.buf, k), strict=True):
                        _put(opt, param, "momentum_buffer", value)
            elif self.steps[k] > 0:
                for param, avg, avg_sq in zip(params, self.flat.rows(self.avg, k),
                                              self.flat.rows(self.avg_sq, k), strict=True):
                    _put(opt, param, "exp_avg", avg)
                    _put(opt, param, "exp_avg_sq", avg_sq)
                    opt.state[param]["step"] = torch.tensor(self.steps[k])


def _put(opt: Any, param: torch.Tensor, key: str, value: torch.Tensor) -> None:
    state = opt.state[param]
    old = state.get(key)
    if old is not None and old.shape == value.shape:
        old.copy_(value)
    else:
        state[key] = value.detach().clone(memory_format=torch.preserve_format)
