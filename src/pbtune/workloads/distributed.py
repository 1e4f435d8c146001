"""Data parallelism inside a trial: a workload's place in its gang, and what keeps replicas equal.

Why: with ``resources.workers_per_trial: W`` a trial trains in W worker processes that form one
``torch.distributed`` group (gloo on CPU, NCCL on GPU; built by the engine, see
:mod:`pbtune.engines.native.gang`). Each process holds a replica of the trial; the engine takes
exploit and checkpoint states from rank 0 and loads them on every rank, so the replicas must stay
identical. :class:`~pbtune.workloads.torch_workload.TorchWorkload` does, with these functions:
every rank draws the same global batch of ``W × batch_size`` from the trial's data order and
trains on its own slice; before each optimiser step the gradients are averaged over the gang
(weighted by each rank's share of the batch, so an uneven last batch still gives the gradient of
the global mean, exactly what one process with the whole batch computes); after each iteration
rank 0's buffers (BatchNorm statistics) are broadcast, so the replicas are equal in full.

This is what ``DistributedDataParallel`` computes, written as a gradient hook instead of a model
wrapper: the user's ``train_step`` keeps calling ``self.model``, dict models and manual
optimisation (a GAN's two optimisers) work unchanged, and state dicts keep their keys, so a state
saved by a gang of any size loads on any other. A workload written on :class:`Workload` directly
reads :attr:`Workload.rank`/``world_size`` and may wrap its model in DDP itself.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def gang_position() -> tuple[int, int]:
    """``(rank, world_size)`` of this process in its trial's gang; ``(0, 1)`` outside one.

    Reads ``torch.distributed`` only if something imported it already (a torch-free workload
    never pays for torch here)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def shard(indices: Any, rank: int, world_size: int) -> tuple[Any, float]:
    """This rank's slice of a global batch's indices, and the weight its mean loss takes so
    that averaging over ranks gives the global batch's mean (1.0 when slices are equal)."""
    if world_size == 1:
        return indices, 1.0
    mine = indices.tensor_split(world_size)[rank]
    return mine, mine.numel() * world_size / max(1, indices.numel())


def weighted(loss: Any, weight: float) -> Any:
    """A rank's loss scaled to its share of the global batch (1.0: unchanged, not copied)."""
    return loss if weight == 1.0 or not hasattr(loss, "requires_grad") else loss * weight


def average_gradients(params: Iterable[Any], world_size: int) -> None:
    """Average the gradients of ``params`` over the gang, in one flat all-reduce per dtype
    and device (a parameter without a gradient counts as zeros, on every rank alike)."""
    if world_size == 1:
        return
    import torch
    import torch.distributed as dist

    groups: dict[tuple[Any, Any], list[Any]] = {}
    for p in params:
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def sum_over_gang(tensor: Any, world_size: int) -> None:
    """In place: the tensor's sum over every rank of the gang (a no-op alone)."""
    if world_size == 1:
        return
    import torch.distributed as dist

    dist.all_reduce(tensor)


def broadcast_buffers(modules: Iterable[Any], world_size: int) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank, as DDP's ``broadcast_buffers``."""
    if world_size == 1:
        return
    import torch.distributed as dist

    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
