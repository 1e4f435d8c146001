"""Turning a plan's :class:`~pbtune.cluster.plan.WorkerSpec` into Ray actor options, and noticing
nodes that join or leave.

Why: a worker must run on the node the plan counted it against, or a small node gets more actors
than it can hold while a big one idles; a hard node-affinity strategy makes Ray fail loudly instead
of silently rebalancing. Polling membership lets the engine grow or shrink the pool elastically.

GPUs: Ray, not pbtune, chooses the physical device and sets ``CUDA_VISIBLE_DEVICES`` inside the
actor (so the actor sees its GPU as ``cuda:0``). ``WorkerSpec.gpu_index`` is the plan's round-robin
bookkeeping: it guarantees that no physical GPU is asked for more than ``floor(1/gpus_per_trial)``
slots, so every actor Ray is asked to place fits on one GPU; it does not pin a device, and the
index Ray picks may differ.
"""

from __future__ import annotations

from typing import Any

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pbtune.cluster.nodes import cluster_nodes
from pbtune.cluster.plan import NodeInfo, WorkerSpec


def actor_options(spec: WorkerSpec) -> dict[str, Any]:
    """Keyword arguments for ``ActorClass.options(**...)``: resources plus a hard pin to the node.

    ``soft=False``: if the node dies before the actor starts, creation fails rather than landing
    the worker on a node the plan did not budget for.
    """
    return {
        "num_cpus": spec.num_cpus,
        "num_gpus": spec.num_gpus,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=spec.node_id, soft=False),
    }


def watch_nodes(known: set[str]) -> tuple[list[NodeInfo], list[str]]:
    """Nodes that joined, and ids of nodes that left, relative to the ``known`` node ids.

    The engine polls this between segments; it is one ``ray.nodes()`` call (cheap, GCS-local).
    """
    alive = cluster_nodes()
    ids = {n.node_id for n in alive}
    return [n for n in alive if n.node_id not in known], sorted(known - ids)
