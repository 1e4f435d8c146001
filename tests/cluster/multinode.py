"""A real multi-node Ray cluster on one machine, for the heterogeneous-cluster tests.

Why a helper: each test needs its own ``ray.cluster_utils.Cluster`` (nodes with different CPU
counts and custom resources), must shut down whatever Ray instance an earlier test left (the
``ray_local`` fixture starts it again lazily) and must always tear its cluster down.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

from tests.conftest import REPO

OBJECT_STORE = 80 * 2**20  # bytes per node: this machine runs several raylets at once


@contextlib.contextmanager
def multinode(nodes: Sequence[dict[str, Any]], head_cpus: int = 0) -> Iterator[tuple[Any, list]]:
    """Yield ``(cluster, [node handles])``; the driver is connected to it. The head gets
    ``head_cpus`` CPUs (0: it runs the driver only, so every worker lands on a listed node)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": head_cpus, "object_store_memory": OBJECT_STORE})
    try:
        handles = [cluster.add_node(object_store_memory=OBJECT_STORE, **spec) for spec in nodes]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        yield cluster, handles
    finally:
        ray.shutdown()
        cluster.shutdown()
