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
from dataclasses import replace
from typing import Any

from pbtune.cluster.capacity import (
    CPU_WORKERS,
    Request,
    effective_reserve,
    node_capacity,
    quantity,
    validate_request,
)
from pbtune.cluster.specs import (
    TRIALS_PER_WORKER,
    NodeInfo,
    NodePlan,
    Plan,
    WorkerSpec,
)
from pbtune.errors import UserError

__all__ = ["CPU_WORKERS", "NodeInfo", "NodePlan", "Plan", "WorkerSpec", "effective_reserve",
           "plan_cluster", "plan_for", "quantity"]

_CAPPED_KEYS = ("CPU", "GPU")  # what resource_allocation may cap


def plan_cluster(nodes: Sequence[NodeInfo], *, cpus_per_trial: float, gpus_per_trial: float,
                 reserve_cpus: float = 1.0,
                 resource_allocation: Mapping[str, Mapping[str, float]] | None = None,
                 slots: int | None = None, cpu_workers: str = "auto",
                 cpus_per_cpu_trial: float | None = None) -> Plan:
    """Plan worker slots per node: GPU workers where GPUs are, CPU workers elsewhere.

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
        cpu_workers: with ``gpus_per_trial > 0``, which nodes also get CPU workers: ``auto``
            those without (usable) GPUs, so CPU nodes and GPU nodes train one population;
            ``all`` also the CPUs a GPU node has left after its GPU workers; ``none`` GPU
            workers only. Ignored when ``gpus_per_trial`` is 0 (every worker is a CPU worker).
        cpus_per_cpu_trial: CPUs of a CPU worker (default ``cpus_per_trial``).

    Returns:
        The plan; ``plan.can_run()`` is False when nothing fits, and ``problems`` then says per
        node why and what to change.

    Raises:
        UserError: the request itself is malformed (negative, zero, or a fractional GPU count
            above 1).
    """
    cw, gw = float(cpus_per_trial), float(gpus_per_trial)
    validate_request(cw, gw, reserve_cpus, slots)
    ccw = float(cpus_per_cpu_trial if cpus_per_cpu_trial is not None else cw)
    validate_request(ccw, 0.0, reserve_cpus, slots)
    if cpu_workers not in CPU_WORKERS:
        raise UserError(f"cpu_workers={cpu_workers!r}; use one of {', '.join(CPU_WORKERS)}")
    req = Request(cw, gw, ccw if gw else cw, cpu_workers, reserve_cpus)
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
        full, layout, fixes[node.node_id] = node_capacity(node, alloc, req)
        take = int(min(full.slots, remaining))
        remaining -= take
        if take < full.slots:
            note = f"capped by slots={slots}" if take else f"unused: slots={slots} reached"
            full = replace(full, slots=take, trials_concurrent=TRIALS_PER_WORKER * take,
                           reason=note, gpu_slots=min(full.gpu_slots, take))
        node_plans.append(full)
        for gpu, cpus, gpus in layout[:take]:
            workers.append(WorkerSpec(index=len(workers), node_id=node.node_id, ip=node.ip,
                                      num_cpus=cpus, num_gpus=gpus, gpu_index=gpu))
    if not nodes:
        problems.append("the cluster has no alive nodes; check --address/RAY_ADDRESS")
    elif not workers:
        problems += [f"{p.ip}: {p.reason} ({fixes[p.node_id]})" for p in node_plans if p.reason]
    elif slots is not None and len(workers) < slots:
        problems.append(f"slots={slots} asked but only {len(workers)} fit; running with "
                        f"{len(workers)} (add nodes or lower cpus_per_trial/gpus_per_trial)")
    return Plan(nodes=tuple(node_plans), workers=tuple(workers), problems=tuple(problems),
                cpus_per_trial=cw, gpus_per_trial=gw, slots_asked=slots,
                cpus_per_cpu_trial=req.ccw)


def plan_for(nodes: Sequence[NodeInfo], resources: Any, *, slots: int | str | None = "config",
             cpu_workers: str | None = None) -> Plan:
    """:func:`plan_cluster` with a config's ``resources`` section (``slots`` may override it).

    Why: the engines, ``pbtune plan`` and elastic growth must plan with exactly the same
    settings; reading them in one place keeps a new resource key from being forgotten in one.
    """
    res = resources
    return plan_cluster(
        nodes, cpus_per_trial=res.cpus_per_trial, gpus_per_trial=res.gpus_per_trial,
        reserve_cpus=res.reserve_cpus,
        resource_allocation=dict(res.resource_allocation) or None,
        slots=res.slots if slots == "config" else slots,  # type: ignore[arg-type]
        cpu_workers=cpu_workers or getattr(res, "cpu_workers", "auto"),
        cpus_per_cpu_trial=getattr(res, "cpus_per_cpu_trial", None))
