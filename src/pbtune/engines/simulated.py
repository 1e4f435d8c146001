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
    Held,
    OnDisk,
    Restore,
    RunSegment,
    SegmentFinished,
    SegmentLost,
    ShareState,
    StopSegments,
    WorkerInfo,
    WorkersChanged,
)
from pbtune.engines.node_options import driver_options, resolve_for_node
from pbtune.engines.segment import Parked, run_segment
from pbtune.workloads.precision import workload_kwargs


@dataclass
class SimWorker:
    """One simulated slot: its speed, node, custom resources and the trials it holds live."""

    index: int
    seconds_per_iteration: float  # virtual s
    node: str
    resources: dict[str, float] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    pins: dict[tuple[str, int], Any] = field(default_factory=dict)  # held: (trial, it) → state
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
        hold_states: states stay on their workers as the Ray workers' large-state path keeps
            them (:class:`Held` handles, copies only on :class:`ShareState`, a pin for a
            released trial, checkpoints copied when asked for). A state asked for that its
            worker no longer has is reported as lost and counted in :attr:`states_gone`.
    """

    def __init__(self, cfg: Any, seconds_per_iteration: Sequence[float] = (1.0, 1.0),
                 nodes: Sequence[str] | None = None,
                 resources: Sequence[Mapping[str, float]] | None = None,
                 shapes: Sequence[str] | None = None, hold_states: bool = False) -> None:
        from pbtune.workloads import get
        from pbtune.workloads.registry import load_data

        self.cfg = cfg
        self.cls = get(cfg.workload)
        self.data = load_data(self.cls, driver_options(cfg.options))
        self.load: Any = None  # checkpoint record → state (set with a run directory)
        self.lost: tuple[type[BaseException], ...] = ()  # no state is ever lost in-process
        self.now = 0.0  # virtual s
        self.hold_states = hold_states
        self.states_gone = 0  # held states asked for that had moved on (a coordinator bug)
        self.exports = 0  # held states copied off their workers for another worker
        self.writes = 0  # held states copied off their workers to be written
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
        w.pins.clear()
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
        elif isinstance(command, ShareState):
            h = command.state
            if isinstance(h, Held):
                if h.shared is None:
                    h.shared = self._copy(h)
                    self.exports += 1
                h.consumers += 1
        else:
            raise TypeError(f"the simulated executor does not run {type(command).__name__}")

    def resolve(self, handle: Any) -> Any:
        if isinstance(handle, OnDisk):
            return self.load(handle.record())
        if isinstance(handle, Held):
            if handle.shared is not None:
                return handle.shared
            self.exports += 1
            return self._copy(handle)
        return handle

    fetch = resolve

    def _copy(self, h: Held) -> Any:
        """A held state's copy from its worker (its pin, else its live state at that iteration).

        Raises:
            LookupError: the worker has neither any more.
        """
        w = self.workers[h.worker]
        pinned = w.pins.get((h.trial_id, h.iteration))
        live = w.live.get(h.trial_id)
        if pinned is not None:
            state = pinned.get_state()
        elif live is not None and live.iteration == h.iteration:
            state = live.get_state()
        else:
            raise LookupError(f"trial {h.trial_id}'s state at {h.iteration} is gone from "
                              f"worker {h.worker}")
        return state

    def start_write(self, handle: Any, path: Any) -> Any:
        """A held state is copied now (before its trial trains on) and written when asked."""
        if not isinstance(handle, Held):
            return None
        from pbtune.store.checkpoints import write_state_file

        state = handle.shared if handle.shared is not None else self._copy(handle)
        self.writes += 1
        return lambda: write_state_file(path, state)

    def discard(self, handle: Any) -> None:
        pass

    def _run(self, c: RunSegment) -> None:
        cfg, w = self.cfg, self.workers[c.worker]
        r = c.restore or Restore(None)
        try:
            state = self.resolve(r.state)
            rng_from = None if self._held_here(r.rng_from, c) else self.resolve(r.rng_from)
        except LookupError as exc:  # as the Ray executor reports a state its worker lost
            self.states_gone += 1
            seq = next(self._seq)
            self.inflight[c.worker] = (self.now, seq, SegmentLost(
                c.worker, c.trial_id, "StateGone", str(exc), True, None))
            heapq.heappush(self._queue, (self.now, seq, c.worker))
            return
        pin = c.pin if self.hold_states and isinstance(c.pin, Held) else None
        if c.drop_from is not None:
            moved = self.workers[c.drop_from].live.pop(c.trial_id, None)
            if pin is not None and pin.worker == c.drop_from and moved is not None:
                self.workers[c.drop_from].pins[(c.trial_id, pin.iteration)] = moved
        if pin is not None and pin.worker == c.worker and c.trial_id in w.live:
            live = w.live[c.trial_id]
            w.pins[(c.trial_id, live.iteration)] = Parked(live.get_state(), live.iteration)
        options = resolve_for_node(cfg.options, w.resources)

        def make() -> Any:
            return self.cls(c.config, data=self.data, options=options, seed=c.seed, device="cpu",
                            **workload_kwargs(w.precision))

        result, best, snapshot = run_segment(
            w.live, c.trial_id, make, c.config, c.target_iteration,
            state=state, include_rng=r.include_rng, rng_from=rng_from, metric=cfg.metric,
            mode=cfg.mode, threshold=cfg.stop.metric_threshold, best_so_far=c.best_so_far,
            snapshot=not self.hold_states)
        if self.hold_states and result["status"] == "ok":
            snapshot = Held(c.worker, c.trial_id, result["iteration"])
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

    @staticmethod
    def _held_here(h: Any, c: RunSegment) -> bool:
        """The target's own RNG, on the worker that holds it live: taken from there."""
        return isinstance(h, Held) and h.worker == c.worker and h.trial_id == c.trial_id and \
            h.shared is None

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

    def stats(self) -> dict[str, int]:
        return {}  # the summary's held-state transfers are the Ray executor's (exports in store)

    def shutdown(self) -> None:
        self.inflight.clear()
        self._queue.clear()
