"""The Ray executor: commands become actor calls, actor results become events. It decides nothing.

Why: the coordinator (:mod:`pbtune.engines.core.coordinator`) must not know Ray. Everything about
Ray lives here and in the pool: the persistent worker actors, where they are placed, the shared
data in the object store, handles to trial states (``ObjectRef`` s), loading checkpoint files
into the object store on first use, and turning a dead actor or a lost object into a
:class:`~pbtune.engines.core.events.SegmentLost` event.
"""

from __future__ import annotations

from typing import Any

import ray

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
from pbtune.engines.native.elastic import WATCH_INTERVAL_S, NodeWatcher
from pbtune.engines.native.pool import WorkerPool

LOST = (ray.exceptions.RayError,)  # what fetching a state that went with its node raises


class RayExecutor:
    """Runs segments on a :class:`WorkerPool`.

    Args:
        cfg: a resolved experiment config (pool, metric, threshold).
        pool: an already started pool (default: one planned from ``cfg``).

    Attributes set by the engine: ``deadline`` (epoch s at which running segments stop, from
    ``stop.time_budget_s``), ``load`` (checkpoint record → state, for :class:`OnDisk` handles)
    and ``watch_interval_s`` (s between membership polls).
    """

    def __init__(self, cfg: Any, pool: WorkerPool | None = None) -> None:
        self.cfg = cfg
        self.pool = pool if pool is not None else WorkerPool(cfg)
        self.deadline: float | None = None
        self.load: Any = None
        self.lost = LOST
        self.watch_interval_s = WATCH_INTERVAL_S
        self.inflight: dict[Any, tuple[int, str, Any, Any]] = {}  # ref → worker, trial, best, snap
        self._disk: dict[OnDisk, Any] = {}  # checkpoint files already in the object store
        self._watcher: NodeWatcher | None = None
        self._membership = self.pool.membership()

    def worker_event(self, journal: dict[str, Any] | None = None) -> WorkersChanged:
        """The pool as the coordinator sees it."""
        pool = self.pool
        return WorkersChanged(tuple(
            WorkerInfo(i, str(info["ip"]), ready=i not in pool.starting, alive=i not in pool.dead,
                       describe=dict(info), shape=str(info.get("shape", pool.specs[i].shape)),
                       precision=str(info.get("precision", "")))
            for i, info in enumerate(pool.info)), journal)

    # -- commands --------------------------------------------------------------------------------
    def execute(self, command: Any) -> None:
        if isinstance(command, RunSegment):
            self._run(command)
        elif isinstance(command, StopSegments):
            self.pool.signal_stop()
        elif isinstance(command, AbandonSegments):
            for ref, (worker, *_rest) in list(self.inflight.items()):
                if worker in command.workers:
                    del self.inflight[ref]
            for worker in command.workers:  # the run is ending: no replacement
                ray.kill(self.pool.workers[worker])
        else:
            raise TypeError(f"the Ray executor does not run {type(command).__name__}")

    def resolve(self, handle: Any) -> Any:
        """An ObjectRef for a state handle (checkpoint files are put in the object store once)."""
        if isinstance(handle, OnDisk):
            if handle not in self._disk:
                self._disk[handle] = ray.put(self.load(handle.record()))
            return self._disk[handle]
        return handle

    def fetch(self, handle: Any) -> Any:
        """The state behind a handle (for persistence and the final best state)."""
        if handle is None:
            return None
        if isinstance(handle, OnDisk):
            return self.load(handle.record())
        return ray.get(handle)

    def _run(self, c: RunSegment) -> None:
        pool = self.pool
        if c.drop_from is not None:
            pool.workers[c.drop_from].drop.remote(c.trial_id)
        r = c.restore or Restore(None)
        rng_from = r.rng_from if r.state is not None and not r.include_rng else None
        refs = pool.workers[c.worker].run.remote(
            c.trial_id, dict(c.config), c.seed, c.target_iteration, state=self.resolve(r.state),
            include_rng=r.include_rng, rng_from=self.resolve(rng_from), metric=self.cfg.metric,
            mode=self.cfg.mode, threshold=self.cfg.stop.metric_threshold,
            best_so_far=c.best_so_far, deadline=self.deadline)
        result, best, snapshot = refs
        self.inflight[result] = (c.worker, c.trial_id, best, snapshot)

    # -- events ----------------------------------------------------------------------------------
    def next_event(self, timeout_s: float | None = None) -> Event | None:
        """The next thing that happened: membership first, else a finished segment (or None)."""
        if self._watcher is None:
            self._watcher = NodeWatcher(self.pool, self.watch_interval_s)
        changed = self._watcher.poll()
        current = self.pool.membership()  # grown, started, retired, lost
        if changed or current != self._membership:
            self._membership = current
            return self.worker_event(self._watcher.events[-1] if changed else None)
        wait = self._watcher.interval_s if timeout_s is None else timeout_s
        # A worker that finishes starting wakes the wait too (adopted on the next call).
        done, _ = ray.wait([*self.inflight, *self.pool.starting_refs()], num_returns=1,
                           timeout=wait)
        if done and done[0] in self.inflight:
            return self._collect(done[0])
        return None

    def next_result(self, timeout_s: float) -> Event | None:
        """The next finished segment only (after Ctrl-C), or None after ``timeout_s``."""
        if not self.inflight:
            return None
        done, _ = ray.wait(list(self.inflight), num_returns=1, timeout=timeout_s)
        return self._collect(done[0]) if done else None

    def _collect(self, ref: Any) -> Event:
        worker, trial_id, best, snapshot = self.inflight.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the worker lives; its results did not
            # come back (run_segment catches the workload's own exceptions): a state or metric
            # that cannot be pickled. The trial fails alone; the worker forgets it.
            self.pool.workers[worker].drop.remote(trial_id)
            cause = getattr(exc, "cause", None) or exc
            first = (str(cause).strip().splitlines() or [""])[0]
            return SegmentFinished(worker, trial_id, {
                "rows": [], "compute_s": 0.0, "iteration": None, "status": "error",
                "error": f"the segment's results could not be sent back from the worker "
                         f"({type(cause).__name__}: {first}); get_state() and the metrics "
                         "must be picklable (tensors, numpy arrays, numbers, dicts, lists)"})
        except ray.exceptions.RayError as exc:  # actor died, node removed, state lost
            state_lost = isinstance(exc, ray.exceptions.ObjectLostError)
            replaced = None if state_lost else self.pool.replace(worker)
            return SegmentLost(worker, trial_id, type(exc).__name__, str(exc), state_lost,
                               replaced)
        return SegmentFinished(worker, trial_id, result, best, snapshot)

    def shutdown(self) -> None:
        self.pool.shutdown()
