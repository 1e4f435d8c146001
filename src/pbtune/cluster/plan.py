"""The capacity plan: how many persistent worker slots each node gets, and where GPUs go.

Why: on a heterogeneous cluster a trial that asks for more than any node can give stays PENDING
forever in Ray, silently. Planning up front, per node and per physical GPU, lets ``pbtune plan``
show exactly what will run where and say what to change when nothing fits. This module is pure
(no Ray import), so the arithmetic is unit-tested without a cluster.

Per node, with ``Csys`` the effective reserve, ``W`` workers, ``T`` trials per worker at a time
(always 1 here) and ``Cw``/``Gw`` the per-trial CPUs/GPUs, a plan satisfies
``Csys + T·W·Cw ≤ Cnode`` and ``T·W·Gw ≤ Gnode``, both further capped by ``resource_allocation``.
Amounts are compared in Ray's fixed-point units (1/10000 of a CPU/GPU), so ``0.33`` GPU packs
exactly as Ray will pack it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pbtune.errors import UserError

TRIALS_PER_WORKER = 1  # T: a worker actor runs one trial segment at a time
SMALL_NODE_CPUS = 4.0  # CPUs; the reserve only bites above this (see effective_reserve)
_RAY_UNITS = 10_000  # Ray stores resource amounts as integers in 1/10000 units
_CAPPED_KEYS = ("CPU", "GPU")  # what resource_allocation may cap


@dataclass(frozen=True)
class NodeInfo:
    """One Ray node as the planner sees it (``cpus``/``gpus`` are Ray's logical totals)."""

    node_id: str
    ip: str
    cpus: float
    gpus: float
    custom: Mapping[str, float] = field(default_factory=dict)
    alive: bool = True
    is_head: bool = False


@dataclass(frozen=True)
class WorkerSpec:
    """One persistent worker slot: the engine starts one Ray actor per spec, pinned to node_id.

    ``gpu_index`` is the node-local GPU the slot is planned on (the first one for multi-GPU
    slots), or None for CPU-only trials; Ray picks the physical device (see placement).
    """

    index: int
    node_id: str
    ip: str
    num_cpus: float
    num_gpus: float
    gpu_index: int | None


@dataclass(frozen=True)
class NodePlan:
    """What one node contributes.

    ``cap_cpus``/``cap_gpus`` are what trials may use there: the node's amount minus the
    reserve (CPUs only), capped by ``resource_allocation``. ``reason`` says why the node got no
    slots or fewer than it could hold; None when it is used fully.
    """

    ip: str
    node_id: str
    cpus: float  # logical CPUs Ray reports
    gpus: float  # logical GPUs Ray reports
    reserve: float  # CPUs kept for Ray/driver/OS (Csys) after the small-node rule
    cap_cpus: float
    cap_gpus: float
    slots: int  # W, worker actors on this node
    trials_concurrent: int  # T·W
    reason: str | None = None
    is_head: bool = False


@dataclass(frozen=True)
class Plan:
    """The whole cluster's plan; ``nodes`` in fill order, ``workers`` numbered 0.. in it."""

    nodes: tuple[NodePlan, ...]
    workers: tuple[WorkerSpec, ...]
    problems: tuple[str, ...] = ()
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    slots_asked: int | None = None

    @property
    def total_slots(self) -> int:
        return len(self.workers)

    @property
    def trials_concurrent(self) -> int:
        return TRIALS_PER_WORKER * len(self.workers)

    def can_run(self) -> bool:
        """True when at least one slot is placed; otherwise ``problems`` says why per node."""
        return bool(self.workers)


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


def _validate(cw: float, gw: float, reserve: float, slots: int | None) -> None:
    if cw < 0 or gw < 0 or (cw == 0 and gw == 0):
        raise UserError(f"cpus_per_trial={cw:g}, gpus_per_trial={gw:g}: a trial needs resources; "
                        "set resources.cpus_per_trial > 0")
    if (cw and _units(cw) == 0) or (gw and _units(gw) == 0):
        raise UserError("per-trial resources below 0.0001 cannot be scheduled by Ray; raise them")
    if gw > 1 and _units(gw) % _RAY_UNITS:
        raise UserError(f"gpus_per_trial={gw:g}: above 1 it must be a whole number (a slot never "
                        "spans part of a second GPU); use 1, 2, ...")
    if reserve < 0:
        raise UserError(f"reserve_cpus={reserve:g} is negative; use 0 or more")
    if slots is not None and slots < 1:
        raise UserError(f"slots={slots} must be at least 1; leave it unset to use every slot")


def _gpu_layout(cap_gpus: float, gw: float) -> list[int]:
    """The node-local GPU index of each possible slot, round-robin over GPUs.

    Each physical GPU is packed on its own (a slot never spans two GPUs, unlike pooled counting,
    Ray issues #5902/#14759); a partial last GPU (a fractional cap) holds what fits in it.
    """
    if gw > 1:  # whole GPUs per slot; the slot is identified by its first GPU
        k = _units(gw) // _RAY_UNITS
        return [i * k for i in range(int(_units(cap_gpus) // _RAY_UNITS) // k)]
    per_gpu = [min(_RAY_UNITS, _units(cap_gpus) - i * _RAY_UNITS) // _units(gw)
               for i in range(math.ceil(_units(cap_gpus) / _RAY_UNITS))]
    layout = []
    for r in range(max(per_gpu, default=0)):
        layout += [gpu for gpu, n in enumerate(per_gpu) if n > r]
    return layout


def _node_capacity(node: NodeInfo, alloc: Mapping[str, Mapping[str, float]] | None,
                   cw: float, gw: float, reserve_cpus: float,
                   ) -> tuple[NodePlan, list[int | None], str]:
    """The node's plan before the ``slots`` cap, each slot's GPU index, and the fix if none."""
    reserve = effective_reserve(node.cpus, reserve_cpus)
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
    cpu_slots = _units(cap_c) // _units(cw) if cw else math.inf
    layout: list[int | None] = [None] * int(cpu_slots) if not gw else list(_gpu_layout(cap_g, gw))
    need_c, need_g = f"{quantity(cw, 'CPU')} per trial", f"{quantity(gw, 'GPU')} per trial"
    excluded = bool(reasons)  # dead or unlisted: the resource checks below say nothing new
    if not excluded and cpu_slots == 0:
        reasons.append(
            (f"resource_allocation gives {quantity(cap_c, 'CPU')} < {need_c}",
             "raise its CPU or lower cpus_per_trial")
            if limits is not None and "CPU" in limits and cap_c < node.cpus - reserve else
            (f"reserve {quantity(reserve, 'CPU')} + {need_c} > {quantity(node.cpus, 'CPU')}",
             "lower cpus_per_trial or reserve_cpus") if reserve > 0 else
            (f"has {quantity(node.cpus, 'CPU')} < {need_c}", "lower cpus_per_trial or add nodes"))
    if not excluded and gw and not layout:
        reasons.append(
            (f"needs {need_g} but has 0 GPUs", "set gpus_per_trial: 0 or add GPU nodes")
            if node.gpus == 0 else
            (f"resource_allocation gives {quantity(cap_g, 'GPU')} < {need_g}",
             "raise its GPU or lower gpus_per_trial") if cap_g < node.gpus else
            (f"has {quantity(node.gpus, 'GPU')} < {need_g}", "lower gpus_per_trial or add nodes"))
    n = int(min(cpu_slots, len(layout)))
    plan = NodePlan(ip=node.ip, node_id=node.node_id, cpus=node.cpus, gpus=node.gpus,
                    reserve=reserve, cap_cpus=cap_c, cap_gpus=cap_g, slots=n,
                    trials_concurrent=TRIALS_PER_WORKER * n,
                    reason="; ".join(r for r, _ in reasons) or None, is_head=node.is_head)
    return plan, layout[:n], "; ".join(f for _, f in reasons)


def plan_cluster(nodes: Sequence[NodeInfo], *, cpus_per_trial: float, gpus_per_trial: float,
                 reserve_cpus: float = 1.0,
                 resource_allocation: Mapping[str, Mapping[str, float]] | None = None,
                 slots: int | None = None) -> Plan:
    """Plan worker slots per node.

    Args:
        nodes: the cluster's nodes (dead ones get no slots).
        cpus_per_trial: Cw, CPUs per trial (= per worker actor).
        gpus_per_trial: Gw; up to 1 it is a share of one GPU (``floor(1/Gw)`` slots per
            physical GPU), above 1 it must be whole and the slot takes that many GPUs.
        reserve_cpus: Csys per node, applied by :func:`effective_reserve` (not on ≤ 4-CPU nodes).
        resource_allocation: node IP → ``{"CPU": n, "GPU": m}``, the most the experiment may use
            there (a missing key leaves that resource uncapped). When non-empty, nodes it does not
            list get nothing, so listing nodes is also how a run is kept off shared machines.
            Applied per Ray node, even when several nodes share an IP.
        slots: cap on the total; nodes are filled in order of GPUs, then CPUs (both descending),
            then IP, so the biggest nodes are used first and the result is deterministic.

    Returns:
        The plan; ``plan.can_run()`` is False when nothing fits, and ``problems`` then says per
        node why and what to change.

    Raises:
        UserError: the request itself is malformed (negative, zero, or a fractional GPU count
            above 1).
    """
    cw, gw = float(cpus_per_trial), float(gpus_per_trial)
    _validate(cw, gw, reserve_cpus, slots)
    alloc = dict(resource_allocation or {})
    order = sorted(nodes, key=lambda n: (-n.gpus, -n.cpus, n.ip, n.node_id))
    ips = {n.ip for n in nodes}
    problems = [f"resource_allocation names {ip}, which is not in the cluster (nodes: "
                f"{', '.join(sorted(ips)) or 'none'}); fix the IP or start Ray on it"
                for ip in sorted(set(alloc) - ips)]
    for ip, limits in sorted(alloc.items()):
        for key in sorted(set(limits) - set(_CAPPED_KEYS)):
            problems.append(f"resource_allocation for {ip} caps {key!r}, which is ignored; "
                            "only CPU and GPU can be capped")

    node_plans, workers, fixes = [], [], {}
    remaining = math.inf if slots is None else slots
    for node in order:
        full, layout, fixes[node.node_id] = _node_capacity(node, alloc, cw, gw, reserve_cpus)
        take = int(min(full.slots, remaining))
        remaining -= take
        if take < full.slots:
            note = f"capped by slots={slots}" if take else f"unused: slots={slots} reached"
            full = replace(full, slots=take, trials_concurrent=TRIALS_PER_WORKER * take,
                           reason=note)
        node_plans.append(full)
        for gpu in layout[:take]:
            workers.append(WorkerSpec(index=len(workers), node_id=node.node_id, ip=node.ip,
                                      num_cpus=cw, num_gpus=gw, gpu_index=gpu))
    if not nodes:
        problems.append("the cluster has no alive nodes; check --address/RAY_ADDRESS")
    elif not workers:
        problems += [f"{p.ip}: {p.reason} ({fixes[p.node_id]})" for p in node_plans if p.reason]
    elif slots is not None and len(workers) < slots:
        problems.append(f"slots={slots} asked but only {len(workers)} fit; running with "
                        f"{len(workers)} (add nodes or lower cpus_per_trial/gpus_per_trial)")
    return Plan(nodes=tuple(node_plans), workers=tuple(workers), problems=tuple(problems),
                cpus_per_trial=cw, gpus_per_trial=gw, slots_asked=slots)
