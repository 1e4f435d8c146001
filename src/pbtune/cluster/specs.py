"""The plan's records: nodes as the planner sees them, worker slots, per-node and whole plans.

Why apart: the engines, the reporting table and the planner all read these; keeping them free of
the arithmetic lets each of those import only what it needs. Pure (no Ray).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

TRIALS_PER_WORKER = 1  # a slot (one worker, or a gang of W) runs one trial segment at a time
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
    num_cpus: float  # per worker process (Cw)
    num_gpus: float  # per worker process (Gw)
    gpu_index: int | None
    ranks: int = 1  # W: worker processes of the slot, a gang when > 1 (one trial at a time)
    rank_nodes: tuple[str, ...] = ()  # gang_placement spread: each rank's node (else node_id)
    members: int = 1  # K: trials its worker trains at once, fused; each is a lane (see lanes())
    host: int | None = None  # a lane's: the index of the lane whose worker it shares (the first)

    def node_of_rank(self, rank: int) -> str:
        return self.rank_nodes[rank] if self.rank_nodes else self.node_id

    @property
    def kind(self) -> str:
        """``"gpu"`` or ``"cpu"``: the device the worker's trials train on."""
        return "gpu" if self.num_gpus > 0 else "cpu"

    @property
    def shape(self) -> str:
        """What the worker holds, as trials.csv's ``worker_shape`` shows it: ``gpu:0.5/cpu:1``,
        ``2x(gpu:1/cpu:2)`` for a gang of two such workers."""
        cpus = f"cpu:{self.num_cpus:g}"
        one = f"gpu:{self.num_gpus:g}/{cpus}" if self.num_gpus else cpus
        if self.members > 1:
            return f"fused{self.members}({one})"
        return one if self.ranks == 1 else f"{self.ranks}x({one})"

    @property
    def worker_index(self) -> int:
        """The lane whose worker process this slot runs on (itself unless fused)."""
        return self.index if self.host is None else self.host


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
    slots: int  # Tnode: trials at once here (each a worker, or a gang of W workers)
    trials_concurrent: int  # = slots (a slot runs one trial at a time)
    reason: str | None = None
    is_head: bool = False
    gpu_slots: int = 0  # of ``slots``, the GPU slots (the rest are CPU slots)
    binding: str | None = None  # what limits ``slots`` before any cap: CPU, GPU, CPU and GPU
    ranks: int = 1  # W, workers per slot
    processes: int | None = None  # worker processes here (slots·W packed; spread: its ranks)


@dataclass(frozen=True)
class Plan:
    """The whole cluster's plan; ``nodes`` in fill order, ``workers`` numbered 0.. in it."""

    nodes: tuple[NodePlan, ...]
    workers: tuple[WorkerSpec, ...]
    problems: tuple[str, ...] = ()
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    slots_asked: int | None = None
    cpus_per_cpu_trial: float = 1.0  # CPUs of a CPU worker when GPU workers exist too
    workers_per_trial: int = 1  # W: a slot is a gang of W worker processes
    members_per_worker: int = 1  # K: trials a worker trains at once (fused)

    def shapes(self) -> dict[str, int]:
        """Worker shape → how many workers have it (``{"gpu:0.5/cpu:1": 2, "cpu:2": 3}``)."""
        out: dict[str, int] = {}
        for w in self.workers:
            out[w.shape] = out.get(w.shape, 0) + 1
        return out

    @property
    def total_slots(self) -> int:
        return len(self.workers)

    @property
    def trials_concurrent(self) -> int:
        return TRIALS_PER_WORKER * len(self.workers) * self.members_per_worker

    def can_run(self) -> bool:
        """True when at least one slot is placed; otherwise ``problems`` says why per node."""
        return bool(self.workers)


def lanes(workers: Sequence[WorkerSpec], members: int, start: int = 0) -> list[WorkerSpec]:
    """Each worker ``members`` times, numbered from ``start``: what the coordinator dispatches
    to (resources.members_per_worker). A worker's lanes share its process; its first lane's
    index is their ``host``. Lanes are interleaved (every worker's first lane, then every
    worker's second, ...) so that trials fewer than the lanes, given to the lowest free index,
    spread over the workers. One member: the specs renumbered, unchanged otherwise."""
    n = len(workers)
    return [replace(spec, index=start + m * n + j, members=members,
                    host=start + j if members > 1 else None)
            for m in range(members) for j, spec in enumerate(workers)]


def lanes_needed(asked: int, population: int, workers: int) -> int:
    """Lanes per worker: ``members_per_worker``, but no more than ``population`` trials need
    on ``workers`` workers (more would let some workers hold every trial while others idle)."""
    return min(asked, max(1, -(-population // max(1, workers))))  # ceil
