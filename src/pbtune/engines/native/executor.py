"""The Ray executor: commands become actor calls, actor results become events. It decides nothing.

Why: the coordinator (:mod:`pbtune.engines.core.coordinator`) must not know Ray. Everything about
Ray lives here and in the pool: the persistent worker actors, where they are placed, the shared
data in the object store, handles to trial states (``ObjectRef`` s), loading checkpoint files
into the object store on first use, and turning a dead actor or a lost object into a
:class:`~pbtune.engines.core.events.SegmentLost` event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

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
from pbtune.engines.native.elastic import WATCH_INTERVAL_S, NodeWatcher
from pbtune.engines.native.held import FileState, StateGone
from pbtune.engines.native.held_writes import HeldWrites
from pbtune.engines.native.pool import WorkerPool
from pbtune.store.checkpoints import CheckpointCorrupt

LOST = (ray.exceptions.RayError,)  # what fetching a state that went with its node raises


class RayExecutor:
    """Runs segments on a :class:`WorkerPool`.

    Args:
        cfg: a resolved experiment config (pool, metric, threshold).
        pool: an already started pool (default: one planned from ``cfg``).

    Attributes set by the engine: ``deadline`` (epoch s at which running segments stop, from
    ``stop.time_budget_s``), ``load`` (checkpoint record → state, for :class:`OnDisk` handles),
    ``watch_interval_s`` (s between membership polls) and, through :meth:`attach`, the run
    directory held states are written to.

    States that stay on their workers (:class:`Held`, see :mod:`pbtune.engines.native.held`)
    are copied only when needed: a donor's once, into the object store, when an exploit asks
    (:class:`ShareState`), freed once its targets' segments have finished; a checkpoint's by
    its worker, to the run directory. Every copy or drop a worker is asked for is queued
    before any later segment of the same trial there, which waits for it.
    """

    def __init__(self, cfg: Any, pool: WorkerPool | None = None) -> None:
        self.cfg = cfg
        self.pool = pool if pool is not None else WorkerPool(cfg)
        self.deadline: float | None = None
        self.load: Any = None
        self.lost = LOST
        self.watch_interval_s = WATCH_INTERVAL_S
        # ref → worker, trial, best, snapshot, the shared donor copies the segment loads, the
        # worker handle it was sent to
        self.inflight: dict[Any, tuple[int, str, Any, Any, list[Held], Any]] = {}
        self._disk: dict[OnDisk, Any] = {}  # checkpoint files already in the object store
        self._watcher: NodeWatcher | None = None
        self._membership = self.pool.membership()
        self.writes = HeldWrites(self.pool)  # copies, drops and writes of held states

    def attach(self, run_dir: Any) -> None:
        """Held states are written into ``run_dir`` (a filesystem every node shares)."""
        self.writes.run_dir = Path(run_dir).absolute()  # workers may not share our cwd
        self.writes.remove_candidates()  # a crashed session's unfinished ones

    def start_write(self, handle: Any, path: Any) -> Any:
        """For the run directory's writer: the worker holding ``handle`` writes it."""
        return self.writes.start_write(handle, path)

    def discard(self, handle: Any) -> None:
        self.writes.discard(handle)

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
        elif isinstance(command, ShareState):
            self.writes.share(command.state)
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

    def resolve(self, handle: Any, worker: int | None = None,
                consumed: list[Held] | None = None) -> Any:
        """What to pass a segment on ``worker`` for a state handle: an ObjectRef (checkpoint
        files are put in the object store once), a :class:`FileState` when states are held, a
        held state's shared copy (counted in ``consumed``) or its export from its worker."""
        if isinstance(handle, OnDisk):
            # Held states: checkpoints go to the workers as files, not through the driver.
            if self.pool.holds_states and self.writes.run_dir is not None:
                return FileState(str(self.writes.run_dir / handle.path), handle.sha256)
            if handle not in self._disk:
                self._disk[handle] = ray.put(self.load(handle.record()))
            return self._disk[handle]
        if isinstance(handle, Held):
            if handle.shared is not None:
                if consumed is not None:
                    consumed.append(handle)
                return handle.shared
            return self.writes.export(handle)
        return handle

    def fetch(self, handle: Any) -> Any:
        """The state behind a handle (for persistence and the final best state); a held best
        state is the lazily loaded ``checkpoints/best.pt``."""
        if handle is None:
            return None
        if isinstance(handle, OnDisk):
            return self.load(handle.record())
        if isinstance(handle, Held):
            return ray.get(self.resolve(handle))
        return self.writes.fetch(handle) if self.writes.owns(handle) else ray.get(handle)

    def _run(self, c: RunSegment) -> None:
        pool = self.pool
        r = c.restore or Restore(None)
        consumed: list[Held] = []
        held_here = isinstance(r.rng_from, Held) and r.rng_from.worker == c.worker and \
            r.rng_from.trial_id == c.trial_id and r.rng_from.shared is None
        state = self.resolve(r.state, c.worker, consumed)
        # A released trial's boundary state stays wanted: pinned where it is (a copy when the
        # trial trains on there; the workload itself when it moves away), while the handle lives.
        pin = c.pin if isinstance(c.pin, Held) and c.pin.shared is None else None
        if pin is not None:
            self.writes.pin(pin)
        rng_from = r.rng_from if r.state is not None and not r.include_rng else None
        # The target's own RNG on the worker that holds it live is taken from there.
        rng = None if held_here else self.resolve(rng_from, c.worker, consumed)
        # A move between lanes of one fused worker is no move: the process keeps the trial live
        # (a drop there could overtake the segment that continues it and lose it).
        moved = c.drop_from is not None and pool.workers[c.drop_from] is not pool.workers[c.worker]
        if moved:  # after any export of it there (the same queue)
            keep = pin.iteration if pin is not None and pin.worker == c.drop_from else None
            self.writes.drop(c.drop_from, c.trial_id, keep)
        refs = pool.workers[c.worker].run.remote(
            c.trial_id, dict(c.config), c.seed, c.target_iteration, state=state,
            include_rng=r.include_rng, rng_from=rng, metric=self.cfg.metric,
            mode=self.cfg.mode, threshold=self.cfg.stop.metric_threshold,
            best_so_far=c.best_so_far, deadline=self.deadline,
            pin_start=pin is not None and pin.worker == c.worker,
            best_to=self.writes.best_path(), after=self.writes.after(c.worker, c.trial_id))
        result, best, snapshot = refs
        # the handle: which process, should it be lost (a fused worker's lanes share one)
        self.inflight[result] = (c.worker, c.trial_id, best, snapshot, consumed,
                                 pool.workers[c.worker])

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
        worker, trial_id, best, snapshot, consumed, handle = self.inflight.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as exc:
            return self._failed(worker, trial_id, exc, handle)
        for held in consumed:  # loaded: the donor copy is freed once no target still needs it
            self.writes.loaded(held)
        if result.get("held"):  # the state stays on the worker: handles name it there
            snapshot = Held(worker, trial_id, result["iteration"]) \
                if result["status"] == "ok" else None
            best = self.writes.best_file(worker, result, trial_id)
        return SegmentFinished(worker, trial_id, result, best, snapshot)

    def _failed(self, worker: int, trial_id: str, exc: BaseException,
                handle: Any = None) -> Event:
        """A segment whose result did not come back: its input state was lost, its worker
        died, or (the worker lives) its results could not be sent."""
        cause = getattr(exc, "cause", None) or exc
        if isinstance(exc, ray.exceptions.ObjectLostError) or isinstance(
                cause, (StateGone, CheckpointCorrupt, FileNotFoundError)) or (
                isinstance(exc, ray.exceptions.RayTaskError)  # an input's task failed in Ray
                and isinstance(cause, ray.exceptions.RayError)) or (  # (a donor's export, OOM)
                isinstance(exc, ray.exceptions.ActorDiedError)
                and not self.writes.is_worker(worker, exc, handle)):  # a donor's died
            return SegmentLost(worker, trial_id, type(cause).__name__, str(cause), True, None)
        if isinstance(exc, ray.exceptions.RayTaskError):  # the worker lives; its results did
            # not come back (run_segment catches the workload's own exceptions): a state or
            # metric that cannot be pickled. The trial fails alone; the worker forgets it.
            self.writes.drop(worker, trial_id)
            first = (str(cause).strip().splitlines() or [""])[0]
            return SegmentFinished(worker, trial_id, {
                "rows": [], "compute_s": 0.0, "iteration": None, "status": "error",
                "error": f"the segment's results could not be sent back from the worker "
                         f"({type(cause).__name__}: {first}); get_state() and the metrics "
                         "must be picklable (tensors, numpy arrays, numbers, dicts, lists)"})
        # actor died, node removed
        replaced = self.pool.replace(worker, lost=handle)  # a fused worker's lanes: once
        self.writes.forget(worker)
        return SegmentLost(worker, trial_id, type(exc).__name__, str(exc), False, replaced)

    def stats(self) -> dict[str, int]:
        """What the summary reports of held states (nothing when states go to the store)."""
        return self.writes.stats() if self.writes.exports or self.pool.holds_states else {}

    def shutdown(self) -> None:
        """Stop the workers; held-state writes still queued finish first, and best candidates
        no one took are removed (their removal, asked for when their handles died, may not
        have run on a worker that is now gone)."""
        run_dir = self.writes.run_dir
        if run_dir is not None:
            live = [w for i, w in enumerate(self.pool.workers) if i not in self.pool.dead]
            try:
                ray.get([w.finish_writes.remote() for w in live], timeout=120)
            except ray.exceptions.RayError:  # a worker already gone: nothing more to finish
                pass
        self.pool.shutdown()
        self.writes.remove_candidates()
