"""Turning a plan's :class:`~pbtune.cluster.plan.WorkerSpec` into Ray actor options, and noticing
nodes that join or leave.

Why: a worker must run on the node the plan counted it against, or a small node gets more actors
than it can hold while a big one idles; a hard node-affinity strategy makes Ray fail loudly instead
of silently rebalancing. Polling membership lets the engine grow or shrink the pool elastically.

GPUs: left to itself, Ray gives a fractional request to the GPU with the least room left, so four
0.25-GPU workers on a 2-GPU node all land on GPU 0 while the plan spreads them [0, 1, 0, 1] (a
``slots`` cap or a small population then leaves GPUs idle). :class:`GpuBundles` makes Ray follow
the plan: one placement group per node, one bundle per physical GPU the plan uses (a whole GPU,
or what ``resource_allocation`` leaves of it, plus the CPUs of its workers), and each GPU worker
pinned to the bundle of its ``WorkerSpec.gpu_index``. Ray still sets ``CUDA_VISIBLE_DEVICES`` in
the actor (which sees its GPU as ``cuda:0``); now it is the planned one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from pbtune.cluster.nodes import cluster_nodes
from pbtune.cluster.plan import NodeInfo, WorkerSpec

_NODE_LABEL = "ray.io/node-id"  # the label Ray gives every node: its id


class GpuBundles:
    """Placement groups that pin GPU workers to the physical GPUs the plan chose."""

    def __init__(self) -> None:
        self._groups: dict[str, tuple[Any, dict[int, int]]] = {}  # node → (group, gpu → bundle)

    def add(self, specs: Sequence[WorkerSpec], cap_gpus: Mapping[str, float]) -> None:
        """Reserve the GPUs of ``specs``' GPU workers, one group per node not reserved yet.

        ``cap_gpus``: node id → GPUs the run may use there (a bundle never exceeds it).
        """
        by_node: dict[str, list[WorkerSpec]] = {}
        for spec in specs:
            if spec.gpu_index is not None and spec.ranks == 1 and spec.node_id not in self._groups:
                by_node.setdefault(spec.node_id, []).append(spec)
        for node, mine in by_node.items():
            gpus = sorted({s.gpu_index for s in mine if s.gpu_index is not None})
            bundles = [{"GPU": min(1.0, cap_gpus.get(node, 1.0) - g),
                        "CPU": sum(s.num_cpus for s in mine if s.gpu_index == g)} for g in gpus]
            group = placement_group(bundles, strategy="STRICT_PACK",
                                    bundle_label_selector=[{_NODE_LABEL: node}] * len(bundles))
            self._groups[node] = (group, {g: i for i, g in enumerate(gpus)})

    def options(self, spec: WorkerSpec) -> dict[str, Any]:
        """``ActorClass.options`` for the worker of ``spec`` (see :func:`actor_options`)."""
        placed = self._groups.get(spec.node_id)
        if spec.gpu_index is None or placed is None:
            return actor_options(spec)
        group, bundle = placed
        return bundle_options(group, bundle[spec.gpu_index], spec)

    def remove(self) -> None:
        for group, _ in self._groups.values():
            try:
                remove_placement_group(group)
            except Exception:  # Ray already gone
                pass
        self._groups.clear()


def gang_group(spec: WorkerSpec) -> Any:
    """A placement group reserving a gang's W bundles (``{CPU: Cw, GPU: Gw}`` each), every
    bundle on the node the plan put that rank on: the gang starts whole or not at all, and
    its ranks never land where the plan did not count them."""
    bundle = {"CPU": spec.num_cpus, **({"GPU": spec.num_gpus} if spec.num_gpus else {})}
    nodes = [spec.node_of_rank(r) for r in range(spec.ranks)]
    return placement_group([dict(bundle) for _ in nodes],
                           strategy="STRICT_PACK" if len(set(nodes)) == 1 else "PACK",
                           bundle_label_selector=[{_NODE_LABEL: n} for n in nodes])


def bundle_options(group: Any, bundle: int, spec: WorkerSpec) -> dict[str, Any]:
    """``ActorClass.options`` for a worker of ``spec`` in bundle ``bundle`` of ``group`` (a GPU
    worker's GPU, or a gang's rank reserved by :func:`gang_group`)."""
    return {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=bundle)}


def actor_options(spec: WorkerSpec) -> dict[str, Any]:
    """Keyword arguments for ``ActorClass.options(**...)``: resources plus a hard pin to the node.

    ``soft=False``: if the node dies before the actor starts, creation fails rather than landing
    the worker on a node the plan did not budget for. (GPU workers go through
    :class:`GpuBundles` instead.)
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
