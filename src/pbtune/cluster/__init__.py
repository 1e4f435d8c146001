"""The cluster layer: connecting to Ray, discovering nodes, the capacity plan, and placement.

Why: on a heterogeneous cluster (nodes with different CPU/GPU counts) the engine must know, before
starting any worker, how many slots each node holds and pin each worker there. The planning math
lives in :mod:`pbtune.cluster.plan`, which does not import Ray; the Ray calls live in
:mod:`pbtune.cluster.nodes` and :mod:`pbtune.cluster.placement` and are imported lazily, so that
``import pbtune.cluster`` (and ``pbtune plan``'s arithmetic, and its tests) stay Ray-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from pbtune.cluster.plan import (
    NodeInfo,
    NodePlan,
    Plan,
    WorkerSpec,
    effective_reserve,
    plan_cluster,
    plan_for,
)

_LAZY = {  # name → module that imports Ray
    "connect": "pbtune.cluster.nodes",
    "cluster_nodes": "pbtune.cluster.nodes",
    "release": "pbtune.cluster.nodes",
    "actor_options": "pbtune.cluster.placement",
    "GpuBundles": "pbtune.cluster.placement",
    "watch_nodes": "pbtune.cluster.placement",
}

__all__ = [
    "GpuBundles",
    "NodeInfo",
    "NodePlan",
    "Plan",
    "WorkerSpec",
    "actor_options",
    "cluster_nodes",
    "connect",
    "effective_reserve",
    "plan_cluster",
    "plan_for",
    "release",
    "watch_nodes",
]


def __getattr__(name: str) -> Any:
    """Import the Ray-bound functions on first use (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
