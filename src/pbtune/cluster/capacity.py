"""Per-node capacity arithmetic for the plan: the reserve, GPU packing, and one node's slots.

Why apart from :mod:`pbtune.cluster.plan`: these are the inequalities ``Csys + T·W·Cw ≤ Cnode``
and ``T·W·Gw ≤ Gnode`` for one node and the messages that say which one binds; the plan module
puts nodes in fill order and applies the cluster-wide ``slots`` cap. Pure (no Ray).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pbtune.cluster.specs import TRIALS_PER_WORKER, NodeInfo, NodePlan
from pbtune.errors import UserError

SMALL_NODE_CPUS = 4.0  # CPUs; the reserve only bites above this (see effective_reserve)
_RAY_UNITS = 10_000  # Ray stores resource amounts as integers in 1/10000 units


def effective_reserve(node_cpus: float, reserve_cpus: float) -> float:
    """The CPUs kept back on a node: ``min(reserve_cpus, max(0, node_cpus - 4))``.

    Why: a big node needs headroom for the raylet, object store and (on the head) the driver,
    but on a laptop or CI runner the same reserve would halve the slots, and Ray's own processes
    need little CPU. Ramping in above 4 CPUs keeps small machines fully usable (2-CPU laptop,
    ``cpus_per_trial`` 1 → 2 slots) and never lets an extra CPU reduce a node's slots.
    """
    return max(0.0, min(reserve_cpus, node_cpus - SMALL_NODE_CPUS))


def _units(x: float) -> int:
    return round(x * _RAY_UNITS)


def quantity(x: float, unit: str) -> str:
    """``1 CPU``, ``0.25 GPUs``: an amount with its unit, for messages and tables."""
    return f"{x:g} {unit}" + ("" if x == 1 else "s")


CPU_WORKERS = ("auto", "all", "none")  # which nodes get CPU workers when GPU workers exist


@dataclass(frozen=True)
class Request:
    """What one worker of each shape takes, and where CPU workers go (see plan_cluster)."""

    cw: float  # CPUs of a GPU worker (and of every worker when gw is 0)
    gw: float  # GPUs of a GPU worker; 0: CPU workers only
    ccw: float  # CPUs of a CPU worker
    cpu_workers: str
    reserve: float
    ranks: int = 1  # W: worker processes per trial (a gang), each of cw (ccw) CPUs and gw GPUs


def validate_request(cw: float, gw: float, reserve: float, slots: int | None,
                     ranks: int = 1) -> None:
    if cw < 0 or gw < 0 or (cw == 0 and gw == 0):
        raise UserError(f"cpus_per_trial={cw:g}, gpus_per_trial={gw:g}: a trial needs resources; "
                        "set resources.cpus_per_trial > 0")
    if (cw and _units(cw) == 0) or (gw and _units(gw) == 0):
        raise UserError("per-trial resources below 0.0001 cannot be scheduled by Ray; raise them")
    if gw > 1:
        raise UserError(f"gpus_per_worker={gw:g}: a worker process trains on one GPU (it "
                        "would use only the first of them); use at most 1 (a fraction packs "
                        "several on one GPU) and resources.workers_per_trial: N for N GPUs per "
                        "trial")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise UserError(f"workers_per_trial={ranks!r} must be an integer >= 1")
    if reserve < 0:
        raise UserError(f"reserve_cpus={reserve:g} is negative; use 0 or more")
    if slots is not None and slots < 1:
        raise UserError(f"slots={slots} must be at least 1; leave it unset to use every slot")


def _gpu_layout(cap_gpus: float, gw: float) -> list[int]:
    """The node-local GPU index of each possible slot, round-robin over GPUs.

    Each physical GPU is packed on its own (a slot never spans two GPUs, unlike pooled counting,
    Ray issues #5902/#14759); a partial last GPU (a fractional cap) holds what fits in it.
    """
    per_gpu = [min(_RAY_UNITS, _units(cap_gpus) - i * _RAY_UNITS) // _units(gw)
               for i in range(math.ceil(_units(cap_gpus) / _RAY_UNITS))]
    layout = []
    for r in range(max(per_gpu, default=0)):
        layout += [gpu for gpu, n in enumerate(per_gpu) if n > r]
    return layout


def node_capacity(node: NodeInfo, alloc: Mapping[str, Mapping[str, float]] | None,
                   req: Request) -> tuple[NodePlan, list[tuple[int | None, float, float]], str]:
    """The node's plan before the ``slots`` cap, its slots as ``(gpu index, CPUs, GPUs)`` (GPU
    slots first; with ``req.ranks`` W > 1 a slot is a gang of W workers of that many CPUs and
    GPUs each, the GPU index its first worker's), and the fix if it gets none."""
    cw, gw, ccw = req.cw, req.gw, req.ccw
    reserve = effective_reserve(node.cpus, req.reserve)
    cap_c, cap_g = max(0.0, node.cpus - reserve), node.gpus
    limits = alloc.get(node.ip) if alloc else None
    if limits is not None:
        cap_c = min(cap_c, max(0.0, float(limits.get("CPU", cap_c))))
        cap_g = min(cap_g, max(0.0, float(limits.get("GPU", cap_g))))
    reasons: list[tuple[str, str]] = []  # (why, what to change)
    if not node.alive:
        cap_c = cap_g = 0.0
        reasons.append(("node is not alive", "restart it or let the run use the others"))
    elif alloc and limits is None:
        cap_c = cap_g = 0.0
        reasons.append(("not in resource_allocation", "list its IP there to use it"))
    layout = _gpu_layout(cap_g, gw) if gw else []
    w = req.ranks
    # Tnode, the trials (gangs of W workers) a node holds: Csys + Tnode·W·Cw ≤ Cnode and
    # Tnode·W·Gw ≤ Gnode (per physical GPU: a worker never spans two).
    by_cpu, by_gpu = _units(cap_c) // (w * _units(cw)), len(layout) // w
    n_gpu = int(min(by_gpu, by_cpu)) if gw else 0
    # CPU workers: every node when the run asks for no GPU; otherwise per ``cpu_workers``.
    cpu_ok = not gw or req.cpu_workers == "all" or (req.cpu_workers == "auto" and cap_g == 0)
    n_cpu = int((_units(cap_c) - n_gpu * w * _units(cw)) // (w * _units(ccw))) if cpu_ok else 0
    if n_gpu:  # what stops one more GPU slot; CPU slots only ever run out of CPUs
        binding = "CPU" if by_cpu < by_gpu else "GPU" if by_gpu < by_cpu else "CPU and GPU"
    else:
        binding = "CPU" if n_cpu else None
    excluded = bool(reasons)  # dead or unlisted: the resource checks below say nothing new
    if not excluded and n_gpu + n_cpu == 0:
        cpu_only = not gw or cpu_ok
        need = ccw if cpu_only else cw
        knob = "cpus_per_cpu_trial" if gw and cpu_only else "cpus_per_trial"
        each = ("CPU worker" if gw and cpu_only else "trial") if w == 1 else (
            f"trial ({w} workers of {quantity(need, 'CPU')})")
        need_c = f"{quantity(need * w, 'CPU')} per {each}"
        if w > 1:
            knob += " or workers_per_trial"
        if _units(cap_c) < w * _units(need):
            reasons.append(
                (f"resource_allocation gives {quantity(cap_c, 'CPU')} < {need_c}",
                 f"raise its CPU or lower {knob}")
                if limits is not None and "CPU" in limits and cap_c < node.cpus - reserve else
                (f"reserve {quantity(reserve, 'CPU')} + {need_c} > {quantity(node.cpus, 'CPU')}",
                 f"lower {knob} or reserve_cpus") if reserve > 0 else
                (f"has {quantity(node.cpus, 'CPU')} < {need_c}", f"lower {knob} or add nodes"))
        if not cpu_only and not layout:
            need_g = f"{quantity(gw * w, 'GPU')} per trial"
            reasons.append(
                (f"needs {need_g} but has 0 GPUs",
                 "set cpu_workers: auto, gpus_per_trial: 0 or add GPU nodes")
                if node.gpus == 0 else
                (f"resource_allocation gives {quantity(cap_g, 'GPU')} < {need_g}",
                 "raise its GPU or lower gpus_per_trial") if cap_g < node.gpus else
                (f"has {quantity(node.gpus, 'GPU')} < {need_g}",
                 "lower gpus_per_trial or add nodes"))
        elif not cpu_only and by_gpu == 0:
            reasons.append(
                (f"its GPUs hold {len(layout)} workers of {quantity(gw, 'GPU')}, a trial needs "
                 f"{w} ({quantity(gw * w, 'GPU')})",
                 "lower workers_per_trial or gpus_per_worker, add GPUs, or use "
                 "gang_placement: spread"))
    slots = [(layout[k * w], cw, gw) for k in range(n_gpu)] + [(None, ccw, 0.0)] * n_cpu
    plan = NodePlan(ip=node.ip, node_id=node.node_id, cpus=node.cpus, gpus=node.gpus,
                    reserve=reserve, cap_cpus=cap_c, cap_gpus=cap_g, slots=len(slots),
                    trials_concurrent=TRIALS_PER_WORKER * len(slots),
                    reason="; ".join(r for r, _ in reasons) or None, is_head=node.is_head,
                    gpu_slots=n_gpu, binding=binding)
    return plan, slots, "; ".join(f for _, f in reasons)
