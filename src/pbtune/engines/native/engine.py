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
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
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
    is_better,
    reached,
)
from pbtune.engines.native.pool import WorkerPool
from pbtune.engines.native.scheduling import choose_trial
from pbtune.pbt import PBTPolicy, PBTSettings, parse_space, sample_config


def policy_settings(cfg: Any) -> PBTSettings:
    """The pure policy's settings from a resolved experiment config."""
    pbt = cfg.pbt
    return PBTSettings(
        perturbation_interval=pbt.perturbation_interval,
        burn_in=pbt.burn_in,
        quantile_fraction=pbt.quantile_fraction,
        resample_probability=pbt.resample_probability,
        perturbation_factors=tuple(pbt.perturbation_factors),
        hyperparam_mutations=dict(pbt.hyperparam_mutations),
        custom_explore_fn=pbt.custom_explore_fn,
        clip=pbt.clip,
    )


def initial_trials(cfg: Any) -> list[Trial]:
    """Sample the population from ``param_space`` with an RNG seeded by ``cfg.seed``."""
    rng = random.Random(f"pbtune-init-{cfg.seed}")
    space = parse_space(dict(cfg.param_space))
    trials = []
    for i in range(cfg.population):
        config = sample_config(space, rng)
        trials.append(Trial(trial_id=f"t{i:03d}", config=config, seed=rng.randrange(2**31)))
    return trials


class NativeEngine:
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
        self.pbt_on: bool = cfg.pbt.enabled
        self.policy = PBTPolicy(policy_settings(cfg), cfg.mode, cfg.seed) if self.pbt_on else None
        self.trials = {t.trial_id: t for t in initial_trials(cfg)}
        self.best: dict[str, Any] | None = None  # trial_id, metric, config, iteration
        self.best_ref: Any = None
        self.exploits = 0
        self.stop_reason = "max_iterations"
        self.stopping = False
        self.pool: WorkerPool | None = None
        self.startup_s = 0.0  # seconds to connect, plan, start workers and share the data

    def prepare(self) -> None:
        """Connect to Ray, plan and start the workers, share the data.

        Separate from :meth:`run` so that every mistake that can be found before training (no
        placeable slot, missing data files) is raised before a results directory is created.
        """
        if self.pool is None:
            start = time.time()
            self.pool = WorkerPool(self.cfg)
            self.startup_s = time.time() - start

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    # -- the barrier -----------------------------------------------------------------------------
    def _barrier_after(self, iteration: int) -> int:
        if not self.pbt_on:
            return self.max_iter
        nxt = (iteration // self.interval + 1) * self.interval
        return min(nxt, self.max_iter)

    def _segment_end(self, trial: Trial, barrier: int) -> int:
        return min(barrier, (trial.iteration // self.interval + 1) * self.interval, self.max_iter)

    def _perturb(self, pool: WorkerPool, iteration: int) -> None:
        live = [t for t in self.trials.values() if t.status == PAUSED and t.iteration == iteration]
        if self.policy is None or iteration >= self.max_iter or not self.policy.is_boundary(
            iteration
        ):
            return
        scores = {t.trial_id: t.scores[iteration] for t in live}
        configs = {t.trial_id: t.config for t in live}
        for decision in self.policy.decide(iteration, scores, configs):
            donor, target = self.trials[decision.donor], self.trials[decision.target]
            target.pending_state = pool.export(donor.worker, donor.trial_id)
            target.include_rng = False
            target.config = dict(decision.new_config)
            target.exploits += 1
            self.exploits += 1
            self._emit("on_exploit", decision)

    # -- results -----------------------------------------------------------------------------------
    def _absorb(self, trial: Trial, worker: int, result: dict[str, Any], best_ref: Any) -> None:
        node = self.pool.node_of(worker)
        for row in result["rows"]:
            row = {**row, "trial_id": trial.trial_id, "config": dict(trial.config),
                   "worker": worker, "node": node}
            trial.scores[row["iteration"]] = float(row[self.metric])
            trial.last_result = row
            self._emit("on_result", trial, row)
            value = float(row[self.metric])
            if reached(value, self.cfg.stop.metric_threshold, self.mode) and not self.stopping:
                self.stopping, self.stop_reason = True, "metric_threshold"
        trial.compute_s += result["compute_s"]
        if result.get("best_iteration") is not None:
            value = trial.scores[result["best_iteration"]]
            if self.best is None or is_better(value, self.best["metric"], self.mode):
                self.best = {"trial_id": trial.trial_id, "metric": value,
                             "config": dict(trial.config), "iteration": result["best_iteration"]}
                self.best_ref = best_ref
        if result["status"] == "error":
            trial.status, trial.error, trial.worker = ERROR, result["error"], None
            self._emit("on_trial_end", trial)
            return
        trial.iteration = result["iteration"]
        if trial.iteration >= self.max_iter:
            trial.status = TERMINATED
            self._emit("on_trial_end", trial)
        else:
            trial.status = PAUSED

    def _best_so_far(self) -> float | None:
        return None if self.best is None else self.best["metric"]

    # -- main loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the experiment to its stopping criterion; returns the summary dict."""
        cfg = self.cfg
        t0 = time.time()
        deadline = t0 + cfg.stop.time_budget_s if cfg.stop.time_budget_s else None
        self.prepare()
        pool = self.pool
        assert pool is not None
        try:
            self._emit("on_start", {"workers": pool.describe(), "trials": list(self.trials.values()),
                                    "slots": pool.size, "start_time": t0})
            for trial in self.trials.values():
                self._emit("on_trial_start", trial)
            barrier = self._barrier_after(0)
            inflight: dict[Any, tuple[int, Trial, Any, float]] = {}
            while True:
                if not self.stopping and deadline is not None and time.time() >= deadline:
                    self.stopping, self.stop_reason = True, "time_budget"
                if self.stopping:
                    pool.signal_stop()
                runnable = [] if self.stopping else [
                    t for t in self.trials.values()
                    if t.status in (PENDING, PAUSED) and t.iteration < barrier
                ]
                busy = {w for w, _, _, _ in inflight.values()}
                for worker in pool.idle(busy):
                    trial = choose_trial(worker, runnable, busy, policy=cfg.scheduling,
                                         speeds=pool.speeds, mode=self.mode)
                    if trial is None:
                        break
                    runnable.remove(trial)
                    ref, best = pool.submit(worker, trial, self._segment_end(trial, barrier),
                                            metric=self.metric, mode=self.mode,
                                            threshold=cfg.stop.metric_threshold,
                                            best_so_far=self._best_so_far(), deadline=deadline)
                    trial.status, trial.worker = RUNNING, worker
                    busy.add(worker)
                    inflight[ref] = (worker, trial, best, time.time() - t0)
                if not inflight:
                    live = [t for t in self.trials.values() if t.status in (PENDING, PAUSED)]
                    if self.stopping or not live:
                        break
                    self._perturb(pool, barrier)
                    barrier = self._barrier_after(barrier)
                    continue
                done, _ = ray.wait(list(inflight), num_returns=1)
                worker, trial, best, started = inflight.pop(done[0])
                result = ray.get(done[0])
                pool.record_speed(worker, len(result["rows"]), result["compute_s"])
                self._absorb(trial, worker, result, best)
                self._emit("on_segment", trial, worker, started, time.time() - t0)
            wall_s = time.time() - t0
            best_state = ray.get(self.best_ref) if self.best_ref is not None else None
        finally:
            pool.shutdown()
        for trial in self.trials.values():
            if trial.status in (PENDING, PAUSED, RUNNING):
                trial.status = TERMINATED
                self._emit("on_trial_end", trial)
        summary = self.summary(wall_s, pool.size)
        self._emit("on_end", summary, best_state)
        return summary

    def summary(self, wall_s: float, slots: int) -> dict[str, Any]:
        """The run's headline numbers (``summary.json``)."""
        compute_s = sum(t.compute_s for t in self.trials.values())
        errors = {t.trial_id: (t.error or "").splitlines()[0] for t in self.trials.values()
                  if t.status == ERROR}
        return {
            "best": self.best,
            "metric": self.metric,
            "mode": self.mode,
            "wall_s": round(wall_s, 3),
            "startup_s": round(self.startup_s, 3),
            "compute_s": round(compute_s, 3),
            "slots": slots,
            "efficiency": round(compute_s / (slots * wall_s), 4) if wall_s > 0 else 0.0,
            "iterations": sum(len(t.scores) for t in self.trials.values()),
            "exploits": self.exploits,
            "trials": len(self.trials),
            "errors": errors,
            "stop_reason": self.stop_reason,
            "engine": "native",
            "scheduling": self.cfg.scheduling,
        }
