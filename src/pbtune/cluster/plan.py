"""The capacity plan: how many persistent worker slots each node gets, and where GPUs go.

Why: on a heterogeneous cluster a trial that asks for more than any node can give stays PENDING
forever in Ray, silently. Planning up front, per node and per physical GPU, lets ``pbtune plan``
show exactly what will run where and say what to change when nothing fits. This module is pure
(no Ray import), so the arithmetic is unit-tested without a cluster.

Per node, with ``Csys`` the effective reserve, ``W`` worker processes per trial
(``workers_per_trial``, a gang when > 1), ``Tnode`` trials at once on the node and ``Cw``/``Gw``
the CPUs/GPUs of one worker, a plan satisfies ``Csys + Tnode·W·Cw ≤ Cnode`` and
``Tnode·W·Gw ≤ Gnode`` (GPUs packed per physical GPU), both further capped by
``resource_allocation``. With ``gang_placement: spread`` a gang's workers may sit on several
nodes: each node's workers are counted as for W = 1 and grouped W at a time in fill order.
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
                 cpus_per_cpu_trial: float | None = None, workers_per_trial: int = 1,
                 gang_placement: str = "pack") -> Plan:
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
        workers_per_trial: W, worker processes per trial; a slot is then a gang of W workers of
            ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs each.
        gang_placement: ``pack`` (a gang on one node) or ``spread`` (W workers anywhere).

    Returns:
        The plan; ``plan.can_run()`` is False when nothing fits, and ``problems`` then says per
        node why and what to change.

    Raises:
        UserError: the request itself is malformed (negative, zero, or a fractional GPU count
            above 1).
    """
    cw, gw, w = float(cpus_per_trial), float(gpus_per_trial), workers_per_trial
    validate_request(cw, gw, reserve_cpus, slots, w)
    if gang_placement not in ("pack", "spread"):
        raise UserError(f"gang_placement={gang_placement!r}; use pack or spread")
    ccw = float(cpus_per_cpu_trial if cpus_per_cpu_trial is not None else cw)
    validate_request(ccw, 0.0, reserve_cpus, slots)
    if cpu_workers not in CPU_WORKERS:
        raise UserError(f"cpu_workers={cpu_workers!r}; use one of {', '.join(CPU_WORKERS)}")
    spread = gang_placement == "spread" and w > 1
    req = Request(cw, gw, ccw if gw else cw, cpu_workers, reserve_cpus, 1 if spread else w)
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
    if spread:
        node_plans, workers = _spread(order, alloc, req, w, fixes, remaining)
    for node in [] if spread else order:
        full, layout, fixes[node.node_id] = node_capacity(node, alloc, req)
        take = int(min(full.slots, remaining))
        remaining -= take
        if take < full.slots:
            note = f"capped by slots={slots}" if take else f"unused: slots={slots} reached"
            full = replace(full, slots=take, trials_concurrent=TRIALS_PER_WORKER * take,
                           reason=note, gpu_slots=min(full.gpu_slots, take))
        node_plans.append(replace(full, ranks=w, processes=take * w))
        for gpu, cpus, gpus in layout[:take]:
            workers.append(WorkerSpec(index=len(workers), node_id=node.node_id, ip=node.ip,
                                      num_cpus=cpus, num_gpus=gpus, gpu_index=gpu, ranks=w))
    if not nodes:
        problems.append("the cluster has no alive nodes; check --address/RAY_ADDRESS")
    elif not workers:
        problems += [f"{p.ip}: {p.reason}" + (f" ({fixes[p.node_id]})" if fixes[p.node_id] else "")
                     for p in node_plans if p.reason]
        if spread:
            problems.append(f"a trial needs {w} workers (workers_per_trial) and the nodes "
                            "together hold fewer; lower workers_per_trial or add nodes")
    elif slots is not None and len(workers) < slots:
        problems.append(f"slots={slots} asked but only {len(workers)} fit; running with "
                        f"{len(workers)} (add nodes or lower cpus_per_trial/gpus_per_trial)")
    return Plan(nodes=tuple(node_plans), workers=tuple(workers), problems=tuple(problems),
                cpus_per_trial=cw, gpus_per_trial=gw, slots_asked=slots,
                cpus_per_cpu_trial=req.ccw, workers_per_trial=w)


def _spread(order: Sequence[NodeInfo], alloc: Mapping[str, Mapping[str, float]],
            req: Request, w: int, fixes: dict[str, str], remaining: float,
            ) -> tuple[list[NodePlan], list[WorkerSpec]]:
    """Gangs of ``w`` workers anywhere: every node's worker positions (as for W = 1), GPU ones
    then CPU ones, taken ``w`` at a time in fill order (a gang never mixes the two)."""
    plans, positions = [], []
    for node in order:
        full, layout, fixes[node.node_id] = node_capacity(node, alloc, req)
        plans.append(full)
        positions += [(node, gpu, cpus, gpus) for gpu, cpus, gpus in layout]
    gangs = [group[i:i + w] for group in ([p for p in positions if p[3]],
                                          [p for p in positions if not p[3]])
             for i in range(0, len(group) - w + 1, w)]
    gangs = gangs[:int(min(len(gangs), remaining))]
    workers = [WorkerSpec(index=k, node_id=g[0][0].node_id, ip=g[0][0].ip, num_cpus=g[0][2],
                          num_gpus=g[0][3], gpu_index=g[0][1], ranks=w,
                          rank_nodes=tuple(p[0].node_id for p in g))
               for k, g in enumerate(gangs)]
    out = []
    for p in plans:
        led = [g for g in gangs if g[0][0].node_id == p.node_id]
        hosted = sum(q[0].node_id == p.node_id for g in gangs for q in g)
        reason = p.reason or (f"{p.slots - hosted} of its {p.slots} workers complete no gang "
                              f"of {w}" if hosted < p.slots else None)
        out.append(replace(p, slots=len(led), trials_concurrent=len(led), reason=reason,
                           gpu_slots=sum(1 for g in led if g[0][3]), ranks=w,
                           processes=hosted))
    return out, workers


def plan_for(nodes: Sequence[NodeInfo], resources: Any, *, slots: int | str | None = "config",
             cpu_workers: str | None = None) -> Plan:
    """:func:`plan_cluster` with a config's ``resources`` section (``slots`` may override it).

    Why: the engines, ``pbtune plan`` and elastic growth must plan with exactly the same
    settings; reading them in one place keeps a new resource key from being forgotten in one.
    """
    res = resources
    plan = plan_cluster(
        nodes, cpus_per_trial=res.cpus_per_trial, gpus_per_trial=res.gpus_per_trial,
        reserve_cpus=res.reserve_cpus,
        resource_allocation=dict(res.resource_allocation) or None,
        slots=res.slots if slots == "config" else slots,  # type: ignore[arg-type]
        cpu_workers=cpu_workers or getattr(res, "cpu_workers", "auto"),
        cpus_per_cpu_trial=getattr(res, "cpus_per_cpu_trial", None),
        workers_per_trial=getattr(res, "workers_per_trial", 1),
        gang_placement=getattr(res, "gang_placement", "pack"))
    k = int(getattr(res, "members_per_worker", 1))
    if k == 1:
        return plan
    # Fused workers: the plan counts members (trials at once), the pool makes them lanes.
    return replace(plan, members_per_worker=k, nodes=tuple(
        replace(p, trials_concurrent=p.trials_concurrent * k) for p in plan.nodes))
