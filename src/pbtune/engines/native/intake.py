"""Taking in a finished segment: its rows, the best result, errors and lost workers.

Why apart from the loop: what a segment's result does to the experiment's record (rows reported
once, the best state kept and persisted, the trial's next status, the journal and the checkpoint
cuts) is one concern; the loop in ``engine.py`` only decides what runs where and when.
"""

from __future__ import annotations

import time
from typing import Any

import ray

from pbtune.engines.base import PAUSED, TERMINATED, Trial, is_better, reached


class IntakeMixin:
    """Result intake of :class:`~pbtune.engines.native.engine.NativeEngine`.

    Uses the engine's ``cfg``, ``metric``, ``mode``, ``interval``, ``max_iter``, ``trials``,
    ``best``, ``best_ref``, ``stopping``, ``stop_reason``, ``last_barrier``, ``recovery``,
    ``failures``, ``pool``, ``_emit``, ``_journal`` and ``_cut_extra``.
    """

    cfg: Any
    metric: str
    mode: str
    interval: int
    max_iter: int
    trials: dict[str, Trial]
    best: dict[str, Any] | None
    best_ref: Any
    stopping: bool
    stop_reason: str
    last_barrier: int
    recovery: Any
    failures: Any
    pool: Any

    # -- results -----------------------------------------------------------------------------------
    def _absorb(self, trial: Trial, worker: int, result: dict[str, Any], best_ref: Any,
                snapshot: Any) -> None:
        node = self.pool.node_of(worker)
        for row in result["rows"]:
            value = float(row[self.metric])
            trial.scores[row["iteration"]] = value
            if row["iteration"] > trial.recorded:  # a re-run after a rollback is not re-reported
                row = {**row, "trial_id": trial.trial_id, "config": dict(trial.config),
                       "worker": worker, "node": node}
                trial.recorded, trial.results, trial.last_result = row["iteration"], \
                    trial.results + 1, row
                self._emit("on_result", trial, row)
            if reached(value, self.cfg.stop.metric_threshold, self.mode) and not self.stopping:
                self.stopping, self.stop_reason = True, "metric_threshold"
        trial.compute_s += result["compute_s"]
        if result.get("best_iteration") is not None:
            value = trial.scores[result["best_iteration"]]
            if self.best is None or is_better(value, self.best["metric"], self.mode):
                self.best = {"trial_id": trial.trial_id, "metric": value,
                             "config": dict(trial.config), "iteration": result["best_iteration"]}
                self.best_ref = best_ref
                if self.recovery is not None:
                    self.recovery.best(best_ref, self.best)
        if result["status"] == "error":
            self.failures.trial_error(trial, result["error"])
            return
        trial.iteration, trial.snapshot = result["iteration"], snapshot
        trial.rng_source = None  # the exploit's state is in the snapshot now
        if len(trial.scores) > 2:  # ranking needs boundary scores only: keep memory flat
            trial.scores = {k: v for k, v in trial.scores.items() if k == trial.iteration or (
                k >= self.last_barrier and k % self.interval == 0)}
        if trial.iteration >= self.max_iter:
            trial.status = TERMINATED
            self._emit("on_trial_end", trial)
        else:
            trial.status = PAUSED
        if self.recovery is not None:
            self.recovery.segment_end(trial, self.trials, final=trial.status == TERMINATED)

    def _best_so_far(self) -> float | None:
        return None if self.best is None else self.best["metric"]

    def _collect(self, pool: Any, inflight: dict[Any, tuple], ref: Any, t0: float) -> None:
        """Take one finished segment: absorb it, or recover its trial if its worker was lost."""
        worker, trial, best, snapshot, started = inflight.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as exc:  # actor died, node removed, state lost
            self.failures.worker_lost(pool, worker, trial, exc)
            return
        pool.record_speed(worker, len(result["rows"]), result["compute_s"])
        self._absorb(trial, worker, result, best, snapshot)
        self._emit("on_segment", trial, worker, started, time.time() - t0)
        self._journal({"event": "result", "trial": trial.trial_id, "iteration": trial.iteration,
                       "status": trial.status, "worker": worker, "rows": len(result["rows"]),
                       "score": trial.scores.get(trial.iteration)})
        if self.recovery is not None:
            self.recovery.assemble(self.trials, self._cut_extra())

