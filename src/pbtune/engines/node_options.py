"""Workload options that depend on the node a worker runs on (per-node ``slowdown``).

Why: benchmarking scheduling on a heterogeneous cluster needs nodes that really are slower, on
hardware that is not. A workload option may therefore name a factor *per custom Ray resource*,
``slowdown: {"slow": 3.0}``: a worker on a node that offers the resource ``slow`` (``ray start
--resources='{"slow": 1}'``) trains 3× slower, every other worker at full speed. Workloads stay
Ray-free: the worker resolves the mapping to a plain float from its node's resources before it
builds any workload, and the driver (which only loads data) sees the neutral value.

Rules for a per-node option given as a mapping ``{resource name: value}``:

* the node offers none of the named resources (amount > 0): the option's neutral value (1.0);
* it offers one: that value; several: the largest (the slowest match wins, so overlapping labels
  cannot make a node faster than any label says).

A plain number is used everywhere unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PER_NODE = {"slowdown": 1.0}  # option name → neutral value (used when no resource matches)


def resolve_for_node(options: Mapping[str, Any], resources: Mapping[str, float]) -> dict[str, Any]:
    """``options`` with every per-node mapping replaced by the value for a node with
    ``resources`` (Ray's resource name → amount). Pure; the unit-testable half."""
    out = dict(options)
    for key, neutral in PER_NODE.items():
        value = out.get(key)
        if isinstance(value, Mapping):
            matches = [float(v) for name, v in value.items() if float(resources.get(name, 0)) > 0]
            out[key] = max(matches) if matches else neutral
    return out


def driver_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options for code that runs on no particular node (``load_data`` on the driver)."""
    return resolve_for_node(options, {})


def node_resources(node_id: str | None = None) -> dict[str, float]:
    """Total resources of ``node_id`` (default: the calling process's node), from the GCS.

    One ``ray.nodes()`` call: cheap, and made once per worker at start.
    """
    import ray

    node_id = node_id or ray.get_runtime_context().get_node_id()
    for raw in ray.nodes():
        if raw.get("NodeID") == node_id:
            return {k: float(v) for k, v in (raw.get("Resources") or {}).items()}
    return {}


def resolve_here(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` resolved for the node this process runs on (call inside a Ray worker)."""
    if not any(isinstance(options.get(k), Mapping) for k in PER_NODE):
        return dict(options)  # nothing per-node: skip the GCS round trip
    return resolve_for_node(options, node_resources())
