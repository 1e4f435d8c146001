"""The native PBT engine: the coordinator and an executor (Ray by default), wired together.

Why: keeping trials as data on long-lived workers means no actor restarts and no checkpoint round
trips between segments, so nearly all slot time is training (Ray Tune's PBT spends most of it on
pausing and restoring when the population exceeds the slots).

This module only wires the parts together: the
:class:`~pbtune.engines.core.coordinator.PopulationCoordinator` decides everything (barriers,
early release, ranking at equal progress, exploit/restore, dispatch, failures, cuts), the
:class:`~pbtune.engines.native.executor.RayExecutor` runs segments on persistent workers, and
the loop (:class:`~pbtune.engines.driver.Driver`) passes each event from the executor to the
coordinator and each command back: to the executor, the run directory's writer
(:mod:`pbtune.engines.persistence`), the journal or the callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pbtune.engines.base import Callback
from pbtune.engines.core.events import OnDisk
from pbtune.engines.core.resume import ResumePoint, from_cut
from pbtune.engines.driver import Driver
from pbtune.engines.native.elastic import WATCH_INTERVAL_S
from pbtune.engines.persistence import BEST_NAME, Persistence
from pbtune.engines.population import initial_trials
from pbtune.store.journal import Journal as JournalFile
from pbtune.store.journal import read_journal


class NativeEngine:
    """Runs one experiment from a resolved config on Ray; emits events to callbacks.

    Args:
        cfg: a resolved :class:`pbtune.config.ExperimentConfig`.
        callbacks: observers (results writer, status table, tensorboard).
        executor: runs the segments; default the Ray executor. A
            :class:`~pbtune.engines.simulated.SimulatedExecutor` runs the same engine in-process.
    """

    def __init__(self, cfg: Any, callbacks: Sequence[Callback] = (), executor: Any = None) -> None:
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.trials = {t.trial_id: t for t in initial_trials(cfg)}  # public records
        self.executor: Any = executor  # None: a RayExecutor, started by prepare()
        self.persistence: Persistence | None = None
        self.coordinator: Any = None
        self._resume: ResumePoint | None = None
        self.startup_s = 0.0  # s to connect, plan, launch workers, share data (to the first start)
        self.watch_interval_s = WATCH_INTERVAL_S  # s between node join/leave polls (elastic)

    @property
    def pool(self) -> Any:
        """The executor's worker pool (None before :meth:`prepare`)."""
        return None if self.executor is None else self.executor.pool

    def prepare(self) -> None:
        """Connect to Ray, plan and start the workers, share the data.

        Separate from :meth:`run` so that every mistake that can be found before training (no
        placeable slot, missing data files) is raised before a results directory is created.
        """
        if self.executor is None:
            from pbtune.engines.native.executor import RayExecutor

            start = time.time()
            self.executor = RayExecutor(self.cfg)
            self.startup_s = time.time() - start

    def enable_recovery(self, run_dir: Path, header: dict[str, Any] | None = None) -> None:
        """Checkpoint into and journal to ``run_dir`` (``pbtune run`` and ``resume`` do this)."""
        self.prepare()
        ex = self.executor
        self.persistence = Persistence(  # held states are written where they are held
            Path(run_dir), JournalFile(Path(run_dir), header), ex.fetch, ex.lost,
            self.cfg.fault_tolerance.keep_checkpoints,
            start_write=getattr(ex, "start_write", None), discard=getattr(ex, "discard", None))
        ex.load = self.persistence.store.load
        if hasattr(ex, "attach"):
            ex.attach(Path(run_dir))

    def restore(self, cut: dict[str, Any], counts: dict[str, int], best: dict[str, Any] | None,
                exploits: int) -> None:
        """Continue from a journal cut (after :meth:`enable_recovery`).

        ``counts`` (rows kept per trial), ``best`` and ``exploits`` come from the rolled-back
        result files, so the summary counts every iteration exactly once. The best result's state
        comes from ``checkpoints/best.pt`` when that file still matches ``best``.
        """
        p = self.persistence
        if p is None:
            raise RuntimeError("restore needs a run directory: call enable_recovery first")
        self._resume = resume_point(p, cut, counts, best, exploits)
        self.trials = {t.trial_id: t.record for t in self._resume.trials}

    def run(self) -> dict[str, Any]:
        """Run the experiment to its stopping criterion; returns the summary dict.

        Ctrl-C (KeyboardInterrupt) stops cleanly: running segments end after their current
        iteration, every trial is checkpointed, and the summary's ``stop_reason`` is
        ``"interrupted"`` (resume with ``pbtune resume``).
        """
        self.prepare()
        ex = self.executor
        ex.watch_interval_s = self.watch_interval_s
        budget = self.cfg.stop.time_budget_s
        ex.deadline = time.time() + budget if budget else None
        driver = Driver(self.cfg, ex, self.callbacks, list(self.trials.values()),
                        self.persistence, self._resume, clock=getattr(ex, "clock", time.time))
        self.coordinator = driver.coordinator
        try:
            return driver.run(self.startup_s)
        finally:
            ex.shutdown()


def resume_point(p: Persistence, cut: dict[str, Any], counts: dict[str, int],
                 best: dict[str, Any] | None, exploits: int) -> ResumePoint:
    """The coordinator's resume point from a cut, with the best state's file when it matches
    ``best``; seeds the writer with the cut's checkpoints and journals the resume."""
    meta = next((e for e in reversed(read_journal(p.run_dir)[1]) if e["event"] == "best"), None)
    best_state = None
    if best and meta and (p.run_dir / "checkpoints" / BEST_NAME).is_file() and (
            meta["trial_id"], meta["iteration"]) == (best["trial_id"], best["iteration"]):
        try:
            p.store.verify(meta)
            best_state = OnDisk.of(meta)
        except ValueError:
            best_state = None
    point = from_cut(cut, counts, best, exploits, best_state)
    p.seed(cut)
    p.journal.write({"event": "resume", "cut": point.cut_iteration, "exploits": exploits},
                    sync=True)
    return point
