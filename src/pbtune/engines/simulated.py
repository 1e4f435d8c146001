"""The simulated executor: real workloads in-process, segment durations from worker speeds.

Why: the coordinator's decisions — barriers, early release, ranking at equal progress,
exploit/restore, speed-aware dispatch, worker loss, resume cuts — should be testable as unit
tests, without Ray and in milliseconds, the way Syne Tune's simulator backend tests schedulers.
This executor runs each segment at once through the same
:func:`~pbtune.engines.segment.run_segment` a Ray worker uses (so rows, states and RNG handling
are identical), and reports it finished at a *virtual* time: the segment's iterations times the
worker's seconds per iteration. Workers can be lost (:meth:`SimulatedExecutor.kill`) or join
(:meth:`SimulatedExecutor.join`) between events. With the same config and seed, the decisions
and every trial's rows equal a Ray run's (the contract test compares them).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pbtune.engines.core.events import (
    AbandonSegments,
    Event,
    OnDisk,
    Restore,
    RunSegment,
    SegmentFinished,
    SegmentLost,
    StopSegments,
    WorkerInfo,
    WorkersChanged,
)
from pbtune.engines.node_options import driver_options, resolve_for_node
from pbtune.engines.segment import run_segment
from pbtune.workloads.precision import workload_kwargs


@dataclass
class SimWorker:
    """One simulated slot: its speed, node, custom resources and the trials it holds live."""

    index: int
    seconds_per_iteration: float  # virtual s
    node: str
    resources: dict[str, float] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    alive: bool = True
    shape: str = "cpu:1"  # a label as the planner writes it; ``gpu:...`` makes it a GPU worker
    precision: str = "fp32"


class SimulatedExecutor:
    """Runs a population's segments in this process on a virtual clock.

    Args:
        cfg: a resolved experiment config (workload, options, metric, threshold).
        seconds_per_iteration: one entry per worker (virtual seconds per iteration).
        nodes: each worker's node name (default ``sim-<i>``).
        resources: each worker's node resources (resolves per-node options like ``slowdown``).
        shapes: each worker's shape label (default ``cpu:1``); a ``gpu:...`` worker trains in
            ``resources.precision.gpu`` (its device stays the CPU: the speed is what differs).
    """

    def __init__(self, cfg: Any, seconds_per_iteration: Sequence[float] = (1.0, 1.0),
                 nodes: Sequence[str] | None = None,
                 resources: Sequence[Mapping[str, float]] | None = None,
                 shapes: Sequence[str] | None = None) -> None:
        from pbtune.workloads import get
        from pbtune.workloads.registry import load_data

        self.cfg = cfg
        self.cls = get(cfg.workload)
        self.data = load_data(self.cls, driver_options(cfg.options))
        self.load: Any = None  # checkpoint record → state (set with a run directory)
        self.lost: tuple[type[BaseException], ...] = ()  # no state is ever lost in-process
        self.now = 0.0  # virtual s
        self.pool = self
        self.workers: list[SimWorker] = []
        for i, spi in enumerate(seconds_per_iteration):
            self.join(spi, nodes[i] if nodes else None, resources[i] if resources else None,
                      announce=False, shape=shapes[i] if shapes else "cpu:1")
        self.inflight: dict[int, tuple[float, int, Event]] = {}  # worker → (end, seq, event)
        self._queue: list[tuple[float, int, int]] = []  # (end, seq, worker)
        self._seq = itertools.count()
        self._changes: list[dict[str, Any]] = []  # membership notes not yet reported
        self.tick_s = 3.0  # virtual s a wait lasts when nothing finishes (the Ray poll interval)
        self.segments: list[tuple[str, int, int, float, float]] = []  # trial, worker, to, s, e

    # -- the pool --------------------------------------------------------------------------------
    def clock(self) -> float:
        return self.now

    @property
    def size(self) -> int:
        return len(self.workers)

    def describe(self) -> list[dict[str, Any]]:
        return [{"index": w.index, "node_id": w.node, "ip": w.node, "host": "simulated",
                 "pid": 0, "shape": w.shape, "precision": w.precision, "alive": w.alive}
                for w in self.workers]

    def worker_event(self, journal: dict[str, Any] | None = None) -> WorkersChanged:
        """The pool as the coordinator sees it."""
        return WorkersChanged(tuple(
            WorkerInfo(w.index, w.node, alive=w.alive, describe={
                k: v for k, v in d.items() if k != "alive"}, shape=w.shape, precision=w.precision)
            for w, d in zip(self.workers, self.describe(), strict=True)), journal)

    def join(self, seconds_per_iteration: float, node: str | None = None,
             resources: Mapping[str, float] | None = None, announce: bool = True,
             shape: str = "cpu:1") -> int:
        """Add a worker (a node joined); returns its index."""
        from pbtune.workloads.precision import resolve

        index = len(self.workers)
        kind = "gpu" if shape.startswith("gpu") else "cpu"
        precision = resolve(getattr(self.cls, "precisions", ("fp32",)),
                            getattr(self.cfg.resources.precision, kind), kind, bf16_ok=True)
        self.workers.append(SimWorker(index, float(seconds_per_iteration), node or f"sim-{index}",
                                      dict(resources or {}), shape=shape, precision=precision))
        if announce:
            self._changes.append({"event": "nodes_joined", "workers": [index]})
        return index

    def kill(self, worker: int, replace: bool = True) -> None:
        """Lose ``worker`` now: its running segment fails, its live trials are gone; without
        ``replace`` the slot is retired (its node left)."""
        w = self.workers[worker]
        w.live.clear()
        if worker in self.inflight:
            _end, seq, ev = self.inflight[worker]
            lost = SegmentLost(worker, ev.trial_id, "ActorDiedError", "simulated worker loss",
                               False, replace)
            self.inflight[worker] = (self.now, seq, lost)
            heapq.heappush(self._queue, (self.now, seq, worker))
        if not replace:
            w.alive = False
            self._changes.append({"event": "nodes_left", "workers": [worker]})

    # -- the executor interface ------------------------------------------------------------------
    def execute(self, command: Any) -> None:
        if isinstance(command, StopSegments):
            pass  # segments run whole when started; the coordinator starts no more
        elif isinstance(command, AbandonSegments):
            for worker in command.workers:
                self.inflight.pop(worker, None)
                self.workers[worker].live.clear()
        elif isinstance(command, RunSegment):
            self._run(command)
        else:
            raise TypeError(f"the simulated executor does not run {type(command).__name__}")

    def resolve(self, handle: Any) -> Any:
        if isinstance(handle, OnDisk):
            return self.load(handle.record())
        return handle

    fetch = resolve

    def _run(self, c: RunSegment) -> None:
        cfg, w = self.cfg, self.workers[c.worker]
        if c.drop_from is not None:
            self.workers[c.drop_from].live.pop(c.trial_id, None)
        r = c.restore or Restore(None)
        options = resolve_for_node(cfg.options, w.resources)

        def make() -> Any:
            return self.cls(c.config, data=self.data, options=options, seed=c.seed, device="cpu",
                            **workload_kwargs(w.precision))

        result, best, snapshot = run_segment(
            w.live, c.trial_id, make, c.config, c.target_iteration,
            state=self.resolve(r.state), include_rng=r.include_rng,
            rng_from=self.resolve(r.rng_from), metric=cfg.metric, mode=cfg.mode,
            threshold=cfg.stop.metric_threshold, best_so_far=c.best_so_far)
        done = max(1, len(result["rows"]))  # iterations the segment took (an error: at least 1)
        end = self.now + done * w.seconds_per_iteration
        for row in result["rows"]:
            row["time_this_iter_s"] = w.seconds_per_iteration
        result["compute_s"] = done * w.seconds_per_iteration
        seq = next(self._seq)
        self.inflight[c.worker] = (end, seq, SegmentFinished(c.worker, c.trial_id, result, best,
                                                             snapshot))
        heapq.heappush(self._queue, (end, seq, c.worker))
        self.segments.append((c.trial_id, c.worker, c.target_iteration, self.now, end))

    def next_event(self, timeout_s: float | None = None) -> Event | None:
        """Membership changes first, else the segment that ends first (the clock moves there)."""
        if self._changes:
            return self.worker_event(self._changes.pop(0))
        return self.next_result(self.tick_s if timeout_s is None else timeout_s)

    def next_result(self, timeout_s: float = 0.0) -> Event | None:
        """The segment that ends first; with ``timeout_s``, None when none ends that soon
        (the clock then moves by ``timeout_s``, as a real wait would)."""
        while self._queue:
            if timeout_s and self._queue[0][0] > self.now + timeout_s:
                self.now += timeout_s
                return None
            end, seq, worker = heapq.heappop(self._queue)
            entry = self.inflight.get(worker)
            if entry is None or entry[1] != seq:
                continue  # superseded (the worker was lost first)
            del self.inflight[worker]
            self.now = max(self.now, end)
            return entry[2]
        return None

    def shutdown(self) -> None:
        self.inflight.clear()
        self._queue.clear()
