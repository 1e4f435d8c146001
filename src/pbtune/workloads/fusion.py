"""Several trials of one workload trained as one batched model (``resources.members_per_worker``).

Why: a small model leaves a core, and far more a GPU, mostly idle; PBT's population is many
copies of one architecture that differ only in weights, optimiser state and hyperparameters.
Stacking the K members' parameters along a new leading dimension and running the model under
``torch.func.vmap`` turns K small forward/backward passes into one wide one (convolutions
become grouped, linear layers batched matmuls), as HFTA (Wang et al., MLSys 2021) does by hand.

Members stay ordinary workload objects: each keeps its own model, optimiser, data order and
augmentation stream, so get_state/set_state, exploit, moves and checkpoints are exactly the
unfused ones. For one iteration the group stacks the members' parameters, buffers (BatchNorm's
running statistics, per member) and optimiser state, trains on a (K, B, ...) batch made of each
member's own next batch (drawn by the member, from its own generator, in the unfused order),
steps a fused optimiser whose hyperparameters are per-member tensors, evaluates, and writes
every member's slice back. Writing back per iteration costs one copy of the weights; it is what
keeps a member's state, and an exploit into it (an index in the stack), the unfused ones.

A workload opts in with ``fusible = True`` and a ``fusion()`` method returning a
:class:`FusionView` (see :class:`~pbtune.workloads.torch_workload.TorchWorkload`);
:func:`fusion_key` says which members may train together: the same batch size, position in
the epoch, optimiser kind and shapes. Members whose keys differ (a mutated ``batch_size``)
train in separate groups, one after the other, each still fused; a member with no key trains
alone, unfused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from pbtune.workloads.fused_optim import FlatParams, FusedOptimizer, optimizer_key
from pbtune.workloads.torch_loop import as_metrics

__all__ = ["FusionView", "fusion_key", "torch_member", "train_and_evaluate"]


@dataclass(frozen=True)
class FusionView:
    """One trial as a fused group's member: what a workload's ``fusion()`` returns.

    Attributes:
        key: what members must share to train together besides the optimiser kind and the
            shapes (batch size, position in the epoch, precision, options, hyperparameters the
            optimiser does not hold).
        model: the one module the steps use (its parameters and buffers are stacked).
        optimizer: its optimiser (one parameter group; SGD, Adam or AdamW).
        batches: ``() -> iterator of (tuple of tensors, samples)``: the member's batches of one
            iteration, drawn from its own generators as its unfused iteration draws them.
        train_step: ``batch -> {"loss": scalar, metric: scalar or per-sample}``, under vmap.
        eval_batches: ``() -> iterator of (tuple of tensors, samples)``: the validation set.
        eval_step: ``batch -> metrics`` (scalars or per sample), under vmap.
        autocast: ``() -> context`` of the trial's precision.
    """

    key: tuple[Any, ...]
    model: nn.Module
    optimizer: Any
    batches: Callable[[], Iterator[tuple[tuple[torch.Tensor, ...], int]]]
    train_step: Callable[[Any], Any]
    eval_batches: Callable[[], Iterator[tuple[tuple[torch.Tensor, ...], int]]]
    eval_step: Callable[[Any], Any]
    autocast: Callable[[], Any]


def torch_member(w: Any, draws: Callable[[list[int]], Iterator[Any]],
                 eval_batches: Callable[[], Iterator[Any]],
                 where: tuple[Any, ...]) -> FusionView | None:
    """A :class:`~pbtune.workloads.torch_workload.TorchWorkload` ``w`` as a member: its own
    batch draws (``draws``, counting steps in a one-element list), validation batches and
    ``where`` (its position in the epoch, its device). None where fusion does not go: loss
    scaling, gradient accumulation, schedulers, manual or several optimisers, a slowdown."""
    if (w.manual_optimization or w.schedulers or w.scaler.is_enabled()
            or w.accumulation_steps != 1 or float(w.options["slowdown"]) > 1.0
            or len(w.models) != 1 or len(w.optimizers) != 1):
        return None
    from pbtune.workloads import hyperparams
    from pbtune.workloads.torch_loop import as_metrics, unpack

    # A hyperparameter no optimiser holds is read by the user's code, which runs once for the
    # whole group (with the first member's self): members must share it.
    own = [(k, repr(v)) for k, v in sorted(w.config.items()) if k not in
           ("batch_size", "accumulation_steps")
           and hyperparams.targets(k, w.param_group_keys, w.optimizers) is None]

    def batches() -> Iterator[tuple[tuple[torch.Tensor, ...], int]]:
        steps = [0]  # one optimiser step per batch: no accumulation when fused
        for tensors, n, _weight in draws(steps):
            yield tuple(tensors), n
            steps[0] += 1

    return FusionView(
        key=(w.batch_size, *where, w.precision, repr(sorted(w.options.items())), tuple(own)),
        model=next(iter(w.models.values())), optimizer=next(iter(w.optimizers.values())),
        batches=batches,
        train_step=lambda b: as_metrics(w.train_step(unpack(list(b))), "train_step"),
        eval_batches=eval_batches,
        eval_step=lambda b: as_metrics(w.eval_step(unpack(list(b))), "eval_step"),
        autocast=w.autocast)


def view_of(workload: Any) -> FusionView | None:
    """The workload's :class:`FusionView`, or None (not opted in, or in a gang, or it says
    this trial cannot fuse now)."""
    if not getattr(workload, "fusible", False) or getattr(workload, "world_size", 1) > 1:
        return None
    return workload.fusion()


def fusion_key(workload: Any) -> tuple[Any, ...] | None:
    """What members must share to train as one group, or None: this one trains alone.

    None for a workload that has not opted in, in a gang, with an optimiser the fused step
    does not implement (SGD, Adam and AdamW with one parameter group are), or when its own
    ``fusion()`` refuses (loss scaling, gradient accumulation, a scheduler, a slowdown).
    """
    view = view_of(workload)
    opt = None if view is None else optimizer_key(view.optimizer)
    if view is None or opt is None:
        return None
    shapes = tuple((n, tuple(t.shape), t.dtype) for n, t in
                   (*view.model.named_parameters(), *view.model.named_buffers()))
    return (type(workload), view.key, opt, shapes)


class _Call(nn.Module):
    """``fn(batch)`` as a module whose only child is the model ``fn`` uses, so
    ``functional_call`` can swap that model's parameters for one member's slice of the stack."""

    def __init__(self, model: nn.Module, fn: Callable[[Any], Any]) -> None:
        super().__init__()
        self.m = model
        object.__setattr__(self, "_fn", fn)  # a bound method, not a child module

    def forward(self, batch: Any) -> Any:
        return self._fn(batch)


def _buffers(models: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """(K, ...) copies of every buffer (BatchNorm's running statistics: each member's own)."""
    named = [dict(m.named_buffers()) for m in models]
    return {f"m.{n}": torch.stack([b[n] for b in named]) for n in named[0]}


def _write_back(models: Sequence[nn.Module], buffers: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, model in enumerate(models):
            for n, t in model.named_buffers():
                t.copy_(buffers[f"m.{n}"][k])


class _Sums:
    """Per-member metric sums, as :class:`~pbtune.workloads.torch_loop.MetricSums` keeps one
    trial's: a scalar is a batch mean (× samples), a (K, B) value is summed per sample."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.seen = 0

    def add(self, out: dict[str, torch.Tensor], n: int) -> None:
        for key, value in out.items():
            value = value.detach()
            total = value.double().reshape(value.shape[0], -1).sum(1) if value.dim() > 1 \
                else value.double() * n
            self.sums[key] = self.sums[key] + total if key in self.sums else total
        self.seen += n

    def means(self, k: int) -> list[dict[str, float]]:
        table = {key: (s / max(self.seen, 1)).tolist() for key, s in self.sums.items()}
        return [{key: float(v[i]) for key, v in sorted(table.items())} for i in range(k)]


def train_and_evaluate(members: Sequence[Any]) -> list[tuple[dict[str, float], dict[str, float]]]:
    """One training iteration and an evaluation of every member, fused; per member
    ``(train metrics, eval metrics)`` as its own ``train(1)`` and ``evaluate()`` return them.

    All members must have the same :func:`fusion_key` (the caller groups them).
    """
    views = [view_of(m) for m in members]
    lead, k = views[0], len(members)
    models = [v.model for v in views]  # type: ignore[union-attr]
    flat = FlatParams(models)
    buffers = _buffers(models)
    optim = FusedOptimizer([v.optimizer for v in views], flat)  # type: ignore[union-attr]
    train_call = _Call(models[0], lead.train_step)  # type: ignore[union-attr]
    eval_call = _Call(models[0], lead.eval_step)  # type: ignore[union-attr]

    def one(call: nn.Module) -> Callable[..., Any]:
        return lambda p, b, batch: as_metrics(functional_call(call, (p, b), (batch,)), "step")

    train_fn = vmap(one(train_call), in_dims=(0, 0, 0))
    eval_fn = vmap(one(eval_call), in_dims=(0, 0, None))
    sums = _Sums()
    models[0].train()
    for batches in zip(*(v.batches() for v in views), strict=True):  # type: ignore[union-attr]
        n = batches[0][1]
        batch = tuple(torch.stack(parts) for parts in zip(*(b for b, _ in batches), strict=True))
        with lead.autocast():  # type: ignore[union-attr]
            out = train_fn(flat.views(), buffers, batch)
        (grad,) = torch.autograd.grad(out["loss"].float().sum(), [flat.flat])
        optim.step(grad)
        sums.add(out, n)
    train = sums.means(k)
    models[0].eval()
    sums = _Sums()
    with torch.no_grad():
        weights = flat.views()
        for batch, n in lead.eval_batches():  # type: ignore[union-attr]
            with lead.autocast():  # type: ignore[union-attr]
                sums.add(eval_fn(weights, buffers, batch), n)
    flat.write_back()
    _write_back(models, buffers)
    optim.write_back()
    for member in members:
        member.iteration += 1
    return list(zip(train, sums.means(k), strict=True))
