"""The coordinator's view of the worker pool: who is up, who is busy, how fast each one is.

Why: dispatch needs idle workers fastest first and the measured speeds, and rows name the node
of the worker that ran them; the executor owns the actual workers and reports every change as
a :class:`~pbtune.engines.core.events.WorkersChanged` event, so this table is plain data.
"""

from __future__ import annotations

import math

from pbtune.engines.core.events import Command, Journal, Notify, WorkerInfo, WorkersChanged
from pbtune.engines.core.state import Running


class WorkerTable:
    """Workers, the segments running on them and their speeds (iterations per compute-s, EMA)."""

    def __init__(self) -> None:
        self.workers: dict[int, WorkerInfo] = {}
        self.speeds: dict[int, float] = {}
        self.running: dict[int, Running] = {}

    def update(self, ev: WorkersChanged, notify: bool = True) -> list[Command]:
        """Take the pool's new membership; journal it and tell the callbacks when it changed."""
        before = self.describe()
        self.workers = {w.index: w for w in ev.workers}
        for w in ev.workers:
            if not w.alive:
                self.speeds.pop(w.index, None)
        out: list[Command] = []
        if ev.journal:
            out.append(Journal({"event": "membership", **ev.journal}, sync=True))
        if notify and self.describe() != before:
            out.append(Notify("on_workers", (self.describe(),)))
        return out

    def describe(self) -> list[dict]:
        """Every worker so far, as the ``on_workers`` hook receives them."""
        return [{**w.describe, "alive": w.alive} for w in self.workers.values()]

    def node(self, worker: int) -> str:
        return self.workers[worker].node if worker in self.workers else ""

    def columns(self, worker: int) -> dict[str, str]:
        """``node``, ``worker_shape`` and ``precision`` for the rows ``worker`` trained."""
        info = self.workers.get(worker)
        return info.columns() if info else {"node": "", "worker_shape": "", "precision": ""}

    def record_speed(self, worker: int, iterations: int, compute_s: float) -> None:
        if iterations and compute_s > 0:
            rate, old = iterations / compute_s, self.speeds.get(worker)
            self.speeds[worker] = rate if old is None else 0.7 * old + 0.3 * rate

    def estimated_speeds(self) -> dict[int, float]:
        """Measured speeds, plus an estimate for unmeasured workers of a measured shape.

        Why: on a mixed cluster a worker's shape predicts its speed (a GPU worker is several
        times a CPU worker). A GPU worker that joins, or is replaced, is planned at its shape's
        mean speed from its first segment, instead of as fast as the fastest worker (which would
        hand a fresh CPU worker the most promising trial) or not at all.
        """
        by_shape: dict[str, list[float]] = {}
        for index, speed in self.speeds.items():
            if index in self.workers:
                by_shape.setdefault(self.workers[index].shape, []).append(speed)
        out = dict(self.speeds)
        for w in self.workers.values():
            if w.index not in out and w.alive and w.shape in by_shape:
                known = by_shape[w.shape]
                out[w.index] = sum(known) / len(known)
        return out

    def idle(self) -> list[int]:
        """Idle live workers, fastest first (unmeasured ones count as fast: they get measured)."""
        free = [w.index for w in self.workers.values()
                if w.alive and w.ready and w.index not in self.running]
        speeds = self.estimated_speeds()
        return sorted(free, key=lambda w: (-speeds.get(w, math.inf), w))

    def busy(self, now_s: float) -> dict[int, tuple[float, int]]:
        """Busy worker → (seconds its segment has run, iterations it was asked for)."""
        return {w: (now_s - r.started_s, r.iterations) for w, r in self.running.items()}
