"""The native PBT engine: a driver loop over persistent Ray workers.

Why: keeping trials as data on long-lived workers means no actor restarts and no checkpoint round
trips between segments, so nearly all slot time is training (Ray Tune's PBT spends most of it on
pausing and restoring when the population exceeds the slots).

Flow: the population is sampled from ``param_space`` with a seeded RNG; trials run in segments up to
the next perturbation boundary; an idle worker always takes a runnable trial (see
:mod:`~pbtune.engines.native.scheduling`). When every live trial has reached the boundary, the PBT
policy ranks them by their score *at that same iteration* (never by whatever they last reported)
and the bottom quantile copies a top-quantile donor's exact current state through the object store
and explores its config. Decisions therefore depend only on the seed and the scores, not on timing.
Meanwhile trials at the boundary that its decisions cannot replace go on (early release, see
:mod:`~pbtune.engines.native.boundary`), so no worker idles while the last ones arrive.

Fault tolerance (see docs/fault-tolerance.md): every segment returns the trial's state at its end
as a snapshot reference (recovery point and exploit donor state); with a run directory attached
(:meth:`NativeEngine.enable_recovery`) states are checkpointed every ``checkpoint_interval``
iterations and every decision is journalled, so ``pbtune resume`` can rebuild the experiment.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray

from pbtune.engines.base import (
    ERROR,
    PAUSED,
    PENDING,
    RUNNING,
    TERMINATED,
    Callback,
    Trial,
    run_summary,
)
from pbtune.engines.native.boundary import BoundaryMixin
from pbtune.engines.native.elastic import WATCH_INTERVAL_S, NodeWatcher
from pbtune.engines.native.failures import FailureHandler
from pbtune.engines.native.intake import IntakeMixin
from pbtune.engines.native.pool import WorkerPool
from pbtune.engines.native.recovery import Recovery
from pbtune.engines.population import initial_trials, policy_settings
from pbtune.pbt import POLICIES, create_policy


class NativeEngine(IntakeMixin, BoundaryMixin):
    """Runs one experiment from a resolved config; emits events to callbacks.

    Args:
        cfg: a resolved :class:`pbtune.config.ExperimentConfig`.
        callbacks: observers (results writer, status table, journal).
    """

    def __init__(self, cfg: Any, callbacks: Sequence[Callback] = ()) -> None:
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.metric: str = cfg.metric
        self.mode: str = cfg.mode
        self.max_iter: int = cfg.stop.max_iterations
        self.interval: int = cfg.pbt.perturbation_interval
        self.ckpt_interval: int = cfg.checkpoint_interval
        policy = cfg.pbt.policy if cfg.pbt.enabled else "random"
        self.pbt_on: bool = POLICIES.get(policy).perturbs
        self.early_release: bool = cfg.pbt.early_release
        self.scheduling: str = cfg.scheduling
        self.policy = (create_policy(policy, policy_settings(cfg), cfg.mode, cfg.seed)
                       if self.pbt_on else None)
        self.trials = {t.trial_id: t for t in initial_trials(cfg)}
        self.best: dict[str, Any] | None = None  # trial_id, metric, config, iteration
        self.best_ref: Any = None
        self.exploits = 0
        self.stop_reason = "max_iterations"
        self.stopping = False
        self.interrupted = False
        self.last_barrier = 0  # the last barrier whose PBT decisions were made
        self.resumed_from: int | None = None  # the cut iteration a resumed run started from
        self.compute_before_s = 0.0  # compute (s) the restored trials carry from before a resume
        self.pool: WorkerPool | None = None
        self.recovery: Recovery | None = None
        self.failures = FailureHandler(self)
        self.startup_s = 0.0  # s to connect, plan, launch workers, share data (to the first start)
        self.watch_interval_s = WATCH_INTERVAL_S  # s between node join/leave polls (elastic)

    def prepare(self) -> None:
        """Connect to Ray, plan and start the workers, share the data.

        Separate from :meth:`run` so that every mistake that can be found before training (no
        placeable slot, missing data files) is raised before a results directory is created.
        """
        if self.pool is None:
            start = time.time()
            self.pool = WorkerPool(self.cfg)
            self.startup_s = time.time() - start

    def enable_recovery(self, run_dir: Path, header: dict[str, Any] | None = None) -> None:
        """Checkpoint into and journal to ``run_dir`` (``pbtune run`` and ``resume`` do this)."""
        from pbtune.store.journal import Journal

        ft = self.cfg.fault_tolerance
        self.recovery = Recovery(Path(run_dir), Journal(Path(run_dir), header),
                                 self.ckpt_interval, ft.keep_checkpoints)

    def restore(self, cut: dict[str, Any], counts: dict[str, int], best: dict[str, Any] | None,
                exploits: int) -> None:
        """Continue from a journal cut (after :meth:`prepare` and :meth:`enable_recovery`).

        ``counts`` (rows kept per trial), ``best`` and ``exploits`` come from the rolled-back
        result files, so the summary counts every iteration exactly once. See
        :func:`~pbtune.engines.native.resume.restore_engine`.
        """
        from pbtune.engines.native.resume import restore_engine

        restore_engine(self, cut, counts, best, exploits)

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def _journal(self, record: dict[str, Any], sync: bool = False) -> None:
        if self.recovery is not None:
            self.recovery.journal.write(record, sync=sync)

    def _cut_extra(self) -> dict[str, Any]:
        return {"last_barrier": self.last_barrier, "exploits": self.exploits, "best": self.best,
                "policy_state": self.policy.get_state() if self.policy else None}

    # -- main loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the experiment to its stopping criterion; returns the summary dict.

        Ctrl-C (KeyboardInterrupt) stops cleanly: running segments end after their current
        iteration, every trial is checkpointed, and the summary's ``stop_reason`` is
        ``"interrupted"`` (resume with ``pbtune resume``).
        """
        cfg = self.cfg
        t0 = time.time()
        deadline = t0 + cfg.stop.time_budget_s if cfg.stop.time_budget_s else None
        self.prepare()
        pool = self.pool
        assert pool is not None
        inflight: dict[Any, tuple[int, Trial, Any, Any, float]] = {}
        try:
            self._emit("on_start", {"workers": pool.describe(),
                                    "trials": list(self.trials.values()),
                                    "slots": pool.size, "start_time": t0})
            if self.resumed_from is None:
                self._journal({"event": "start", "trials": [
                    {"trial_id": t.trial_id, "config": t.config, "seed": t.seed}
                    for t in self.trials.values()],
                    "policy_state": self.policy.get_state() if self.policy else None}, True)
            for trial in self.trials.values():
                self._emit("on_trial_start", trial)
            try:
                self._loop(pool, inflight, t0, deadline)
            except KeyboardInterrupt:
                self._interrupt(pool, inflight, t0)
            wall_s = time.time() - t0
            if self.recovery is not None:
                if self.interrupted:
                    self._rewind_released()
                self.recovery.final_cut(self.trials, self._cut_extra(), final=not self.interrupted)
                self.recovery.drain()
                self.recovery.check()
            best_state = ray.get(self.best_ref) if self.best_ref is not None else None
        except OSError as exc:
            from pbtune.store.checkpoints import DISK_ERRNOS, disk_error

            if exc.errno in DISK_ERRNOS and self.recovery is not None:
                raise disk_error(exc, self.recovery.run_dir) from exc
            raise
        finally:
            pool.shutdown()
            if self.recovery is not None:
                self.recovery.close()
        if not self.interrupted:
            for trial in self.trials.values():
                if trial.status in (PENDING, PAUSED, RUNNING):
                    trial.status = TERMINATED
                    self._emit("on_trial_end", trial)
        summary = self.summary(wall_s, pool.size)
        self._emit("on_end", summary, best_state)
        if self.recovery is not None and not self.interrupted:
            from pbtune.store.journal import Journal

            journal = Journal(self.recovery.run_dir)
            journal.write({"event": "end", "final": True, "summary": summary}, sync=True)
            journal.close()
        return summary

    def _loop(self, pool: WorkerPool, inflight: dict[Any, tuple], t0: float,
              deadline: float | None) -> None:
        cfg = self.cfg
        barrier = self._barrier_after(self.last_barrier)
        watcher = NodeWatcher(pool, self.watch_interval_s)
        membership = pool.membership()
        while True:
            if self.recovery is not None:
                self.recovery.check()
            if not self.stopping and deadline is not None and time.time() >= deadline:
                self.stopping, self.stop_reason = True, "time_budget"
            if self.stopping:
                pool.signal_stop()
            if not self.stopping and barrier < self.max_iter and not any(
                    t.status in (PENDING, PAUSED, RUNNING) and t.iteration < barrier
                    for t in self.trials.values()):
                barrier = self._pass_barrier(pool, barrier)  # all reached it (some went on)
                continue
            if not self.stopping:
                self._release(barrier)
            runnable = [] if self.stopping else [
                t for t in self.trials.values()
                if t.status in (PENDING, PAUSED) and t.iteration < self._limit(t, barrier)
            ]
            if watcher.poll():  # nodes joined or left (elastic.py)
                self._journal({"event": "membership", **watcher.events[-1]}, sync=True)
            if (current := pool.membership()) != membership:  # grown, started, retired, lost
                membership = current
                self._emit("on_workers", pool.describe())
            busy = {w for w, *_ in inflight.values()}
            now = time.time() - t0
            running = {w: (now - started, self._end(t, barrier) - t.iteration)
                       for w, t, _b, _s, started in inflight.values()}  # s run, iterations
            for worker, trial in self._assign(pool, busy, runnable, running, barrier):
                trial.recover = ((trial.pending_state, trial.include_rng)
                                 if trial.pending_state is not None else (trial.snapshot, True))
                ref, best, snapshot = pool.submit(
                    worker, trial, self._end(trial, barrier), metric=self.metric,
                    mode=self.mode, threshold=cfg.stop.metric_threshold,
                    best_so_far=self._best_so_far(), deadline=deadline)
                trial.status, trial.worker = RUNNING, worker
                busy.add(worker)
                inflight[ref] = (worker, trial, best, snapshot, time.time() - t0)
            if not inflight:
                live = [t for t in self.trials.values() if t.status in (PENDING, PAUSED)]
                if self.stopping or not live:
                    break
                if not pool.idle(set()):
                    raise RuntimeError("every worker was lost and none could be recreated")
                barrier = self._pass_barrier(pool, barrier)
                continue
            # Timeout: membership is polled even while every worker is in a long segment.
            # A worker that finishes starting wakes the wait too (adopted on the next turn).
            done, _ = ray.wait([*inflight, *pool.starting_refs()], num_returns=1,
                               timeout=watcher.interval_s)
            if done and done[0] in inflight:
                self._collect(pool, inflight, done[0], t0)

    def _interrupt(self, pool: WorkerPool, inflight: dict[Any, tuple], t0: float) -> None:
        """Ctrl-C: let running segments end after their current iteration, then stop."""
        self.interrupted, self.stopping, self.stop_reason = True, True, "interrupted"
        pool.signal_stop()
        while inflight:  # a second Ctrl-C aborts this wait (the last cut stays the resume point)
            done, _ = ray.wait(list(inflight), num_returns=1, timeout=60)
            if not done:
                break
            self._collect(pool, inflight, done[0], t0)
        # Did not finish, or Ctrl-C came while its result was being taken in: resume it from the
        # start of that segment (a trial that had not finished its first one starts afresh).
        for trial in self.trials.values():
            if trial.status == RUNNING:
                trial.status = PENDING if trial.iteration == 0 else PAUSED
                trial.worker = None
                trial.pending_state, trial.include_rng = trial.recover
        self._journal({"event": "stop", "reason": "interrupted"}, True)

    def summary(self, wall_s: float, slots: int) -> dict[str, Any]:
        """The run's headline numbers (``summary.json``)."""
        trials = self.trials.values()
        return run_summary(
            best=self.best, metric=self.metric, mode=self.mode, wall_s=wall_s,
            startup_s=self.startup_s, trials=trials, slots=slots, exploits=self.exploits,
            population=len(self.trials),
            errors={t.trial_id: (t.error or "").splitlines()[0] for t in trials
                    if t.status == ERROR},
            failures={t.trial_id: t.failures for t in trials if t.failures},
            compute_before_s=self.compute_before_s,
            resumed_from=self.resumed_from, stop_reason=self.stop_reason, engine="native",
            scheduling=self.cfg.scheduling,
        )
