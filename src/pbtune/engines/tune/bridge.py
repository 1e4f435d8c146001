"""Tune's callback events → pbtune's :class:`~pbtune.engines.base.Callback` events.

Why: the results writer, the live status view and TensorBoard logger observe *pbtune* events
(``on_result`` rows with ``iteration``/``config``/``worker``/``node``, ``on_exploit`` decisions).
This bridge runs in the driver, inside Tune's controller loop, and translates as results arrive,
so every sink works unchanged on ``engine: tune`` and the files have the native layout. It also
keeps the summary's running numbers (best, compute seconds, iterations), exactly once per report.

Trial ids: Tune's ``<exp>_00003`` becomes pbtune's ``t003``. Workers: each trial actor process
(pid) gets a small index in first-seen order; with ``reuse_actors`` those are the slots' actors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ray import tune

from pbtune.engines.base import ERROR, RUNNING, TERMINATED, Trial, is_better, reached
from pbtune.engines.tune.trainable import trial_index
from pbtune.pbt import Decision

_SKIP = {"config", "trial_id", "experiment_tag", "date", "hostname", "pid", "time_total_s",
         "time_since_restore", "iterations_since_restore", "timesteps_since_restore",
         "checkpoint_dir_name", "done", "should_checkpoint", "training_iteration", "worker_pid",
         "timesteps_total", "episodes_total", "node_ip"}


def pbtune_id(tune_trial_id: str) -> str:
    return f"t{trial_index(tune_trial_id):03d}"


class Bridge(tune.Callback):
    """Translates Tune events; ``emit(hook, *args)`` reaches every pbtune callback."""

    def __init__(self, emit: Callable[..., None], *, metric: str, mode: str,
                 hyperparameters: Sequence[str], seeds: Sequence[int], t0: float,
                 threshold: float | None) -> None:
        self.emit, self.metric, self.mode = emit, metric, mode
        self.names, self.seeds = tuple(hyperparameters), list(seeds)
        self.t0, self.threshold = t0, threshold
        self.trials: dict[str, Trial] = {}
        self.tune_trials: dict[str, Any] = {}  # pbtune id → Tune Trial (for checkpoints)
        self.workers: dict[tuple[str, int], int] = {}  # (node ip, pid) → worker index
        self.best: dict[str, Any] | None = None
        self.exploits = 0
        self.threshold_hit = False
        self.staging: set[str] = set()  # Tune's local experiment dirs (where PBT logs go)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its run config; sinks hold files
        return {}

    def hyper(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {k: config[k] for k in self.names if k in config}

    def _trial(self, tune_trial: Any) -> Trial:
        tid = pbtune_id(tune_trial.trial_id)
        if tid not in self.trials:
            idx = trial_index(tune_trial.trial_id)
            seed = self.seeds[idx % len(self.seeds)] if self.seeds else idx
            trial = Trial(trial_id=tid, config=self.hyper(tune_trial.config), seed=seed)
            self.trials[tid] = trial
            self.tune_trials[tid] = tune_trial
            self.emit("on_trial_start", trial)
        return self.trials[tid]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial(trial).status = RUNNING
        self.staging.add(str(trial.local_experiment_path))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        record = self._trial(trial)
        it = int(result["training_iteration"])
        node = str(result.get("node_ip", ""))
        worker = self.workers.setdefault((node, int(result.get("worker_pid", 0))),
                                         len(self.workers))
        value = float(result[self.metric])
        record.config = dict(result.get("pbtune_config") or self.hyper(trial.config))
        record.iteration, record.status = it, RUNNING
        record.compute_s += float(result.get("compute_s", 0.0))
        record.results += 1
        record.worker = worker
        row = {k: v for k, v in result.items()
               if k not in _SKIP and isinstance(v, (int, float, str, bool))}
        row.update(trial_id=record.trial_id, iteration=it, config=dict(record.config),
                   worker=worker, node=node)
        record.last_result = row
        if self.best is None or is_better(value, self.best["metric"], self.mode):
            self.best = {"trial_id": record.trial_id, "metric": value,
                         "config": dict(record.config), "iteration": it}
        if reached(value, self.threshold, self.mode):
            self.threshold_hit = True
        self.emit("on_result", record, row)
        end = time.time() - self.t0
        start = max(0.0, end - float(result.get("time_this_iter_s", 0.0)))
        self.emit("on_segment", record, worker, start, end)

    def _end(self, trial: Any, status: str, error: str | None = None) -> None:
        record = self._trial(trial)
        record.status, record.error = status, error
        self.emit("on_trial_end", record)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, TERMINATED)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, ERROR, str(getattr(trial, "error_file", None) or "trial failed"))

    def on_decision(self, target: Any, donor: Any, new_config: dict[str, Any]) -> None:
        """Called by the PBT/PB2 scheduler each time it logs an exploit."""
        t, d = self._trial(target), self._trial(donor)
        decision = Decision(
            target=t.trial_id, donor=d.trial_id,
            target_iteration=int(target.last_result.get("training_iteration", 0)),
            donor_iteration=int(donor.last_result.get("training_iteration", 0)),
            old_config=self.hyper(donor.config), new_config=self.hyper(new_config))
        t.config = dict(decision.new_config)
        t.exploits += 1
        self.exploits += 1
        self.emit("on_exploit", decision)


class ThresholdStopper(tune.Stopper):
    """Per trial: ``max_iterations``; experiment-wide: the metric threshold (as native)."""

    def __init__(self, bridge: Bridge, max_iterations: int) -> None:
        self.bridge, self.max_iterations = bridge, max_iterations

    def __call__(self, trial_id: str, result: dict) -> bool:
        return int(result.get("training_iteration", 0)) >= self.max_iterations

    def stop_all(self) -> bool:
        return self.bridge.threshold_hit

    def __getstate__(self) -> dict[str, Any]:
        return {"max_iterations": self.max_iterations}
