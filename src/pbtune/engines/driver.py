"""The driver loop: events from an executor to the coordinator, its commands back out.

Why one loop for every executor: the Ray executor and the simulated one differ in *how* segments
run, never in what is decided, so the same loop — and the same routing of commands to the
executor, the run directory's writer, the journal and the callbacks — drives both. A scenario
run on the simulated executor therefore exercises exactly the code a Ray run does, except the
executor itself.

An executor provides: ``worker_event()`` (a ``WorkersChanged`` of the pool), ``execute(command)``,
``next_event()`` (an event, or None when only time passed), ``next_result(timeout_s)`` (after
Ctrl-C: finished segments only), ``inflight`` (segments running), ``fetch(handle)`` and
``pool.describe()`` / ``pool.size``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pbtune.engines.base import ERROR, run_summary
from pbtune.engines.core.coordinator import PopulationCoordinator
from pbtune.engines.core.events import (
    Checkpoint,
    Journal,
    Notify,
    SaveBest,
    StopRequested,
    TimePassed,
    WriteCut,
    WriteError,
)
from pbtune.engines.core.resume import ResumePoint
from pbtune.engines.core.settings import RunSettings, policy_name
from pbtune.engines.dispatch import create_dispatcher
from pbtune.engines.population import policy_settings
from pbtune.pbt import create_policy
from pbtune.store.checkpoints import DISK_ERRNOS, disk_error
from pbtune.store.journal import Journal as JournalFile

PERSISTED = (Checkpoint, WriteCut, SaveBest, WriteError)


class Driver:
    """One run of the loop.

    Args:
        cfg: a resolved experiment config.
        executor: runs the commands (see the module docstring).
        callbacks: observers.
        trials: the population's public records (from ``initial_trials`` or a resume point).
        persistence: the run directory's writer, or None (no checkpoints, no journal).
        resume: where a resumed run continues from, or None.
        clock: epoch seconds (``time.time``; the simulated executor's virtual clock).
    """

    def __init__(self, cfg: Any, executor: Any, callbacks: Sequence[Any], trials: Sequence[Any],
                 persistence: Any = None, resume: ResumePoint | None = None,
                 clock: Callable[[], float] = lambda: 0.0) -> None:
        self.cfg, self.executor, self.callbacks = cfg, executor, callbacks
        self.persistence, self.clock = persistence, clock
        policy = create_policy(policy_name(cfg), policy_settings(cfg), cfg.mode, cfg.seed)
        self.coordinator = PopulationCoordinator(
            RunSettings.from_config(cfg, recovery=persistence is not None), trials, policy,
            create_dispatcher(cfg.scheduling), resume)
        self.trials = list(trials)

    def route(self, commands: list[Any]) -> None:
        """Each command to whom it is for; a batch is carried out whole even when Ctrl-C (or a
        callback raising KeyboardInterrupt) comes in the middle, since the coordinator's state
        already counts every command in it (the interruption is raised after the batch)."""
        interrupted: KeyboardInterrupt | None = None
        for c in commands:
            try:
                self._one(c)
            except KeyboardInterrupt as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    def _one(self, c: Any) -> None:
        p = self.persistence
        if isinstance(c, Journal):
            if p is not None:
                p.journal.write(c.record, sync=c.sync)
        elif isinstance(c, Notify):
            for cb in self.callbacks:
                hook = getattr(cb, c.hook, None)  # a callback written before a hook existed
                if hook is not None:
                    hook(*c.args)
        elif isinstance(c, PERSISTED):
            if p is not None:
                p.submit(c)
        else:
            self.executor.execute(c)

    def run(self, startup_s: float = 0.0) -> dict[str, Any]:
        """The whole run; returns the summary (see :meth:`NativeEngine.run`)."""
        ex, p, coord = self.executor, self.persistence, self.coordinator
        t0 = self.clock()
        try:
            self.route([Notify("on_start", ({"workers": ex.pool.describe(),
                                              "trials": self.trials,
                                              "slots": ex.pool.size, "start_time": t0},))])
            try:
                self.route(coord.start(ex.worker_event(), 0.0))
                while not coord.finished:
                    if p is not None:
                        p.check()
                        while not p.written.empty():
                            self.route(coord.handle(p.written.get(), self.clock() - t0))
                    event = ex.next_event()
                    self.route(coord.handle(event or TimePassed(), self.clock() - t0))
                    self.route(coord.step(self.clock() - t0))
            except KeyboardInterrupt:
                self._interrupt(t0)
            wall_s = self.clock() - t0
            self.route(coord.finish())
            if p is not None:
                p.drain()
                p.check()
            best_state = ex.fetch(coord.best_state)
        except OSError as exc:
            if exc.errno in DISK_ERRNOS and p is not None:
                raise disk_error(exc, p.run_dir) from exc
            raise
        finally:
            if p is not None:
                p.close()
        summary = summarize(coord, wall_s, ex.pool.size, startup_s, engine="native",
                            scheduling=self.cfg.scheduling)
        if held := ex.stats():  # exports and the most in the object store at once
            summary["held_states"] = held
        self.route([Notify("on_end", (summary, best_state))])
        if p is not None and not coord.interrupted:
            journal = JournalFile(p.run_dir)
            journal.write({"event": "end", "final": True, "summary": summary}, sync=True)
            journal.close()
        return summary

    def _interrupt(self, t0: float) -> None:
        """Ctrl-C: let running segments end after their current iteration, then stop."""
        coord = self.coordinator
        self.route(coord.handle(StopRequested("interrupted"), self.clock() - t0))
        self.route(coord.step(self.clock() - t0))
        try:
            while self.executor.inflight:  # a second Ctrl-C ends this wait
                event = self.executor.next_result(60)
                if event is None:
                    break
                self.route(coord.handle(event, self.clock() - t0))
                self.route(coord.step(self.clock() - t0))
        except KeyboardInterrupt:  # segments not taken in start again from their beginning
            pass


def summarize(coord: PopulationCoordinator, wall_s: float, slots: int, startup_s: float,
              **extra: Any) -> dict[str, Any]:
    """The run's headline numbers (``summary.json``) from the coordinator's final state."""
    records = [t.record for t in coord.trials.values()]
    return run_summary(
        best=coord.best, metric=coord.s.metric, mode=coord.s.mode, wall_s=wall_s,
        startup_s=startup_s, trials=records, slots=slots, exploits=coord.exploits,
        population=len(records),
        errors={r.trial_id: (r.error or "").splitlines()[0] for r in records
                if r.status == ERROR},
        failures={r.trial_id: r.failures for r in records if r.failures},
        compute_before_s=coord.compute_before_s, resumed_from=coord.resumed_from,
        stop_reason=coord.stop_reason, **extra)
