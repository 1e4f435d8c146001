"""``engine: tune``: run a pbtune experiment through Ray Tune's ``Tuner``.

Why a second engine: to compare the native engine with Tune under identical conditions, and to
reach Tune's other schedulers (PB2, ASHA, HyperBand, random search, Optuna, PBT replay) with the
same configs, workloads and result files. :class:`TuneEngine` has the native engine's surface —
``prepare()``, ``run() -> summary``, ``callbacks``, ``enable_recovery(run_dir)`` — so ``pbtune run``
and the benchmark drive either without knowing which.

What is normalised (see docs/engines.md): the population is pbtune's seeded sample (the same
configs and trial seeds as native for the same seed); trial ids are ``t000``...; every report
becomes an ``on_result`` row; every exploit an ``on_exploit`` decision (so ``pbt_global.txt`` and
``pbt_policy_<trial>.txt`` are written by the results writer in pbtune ids), Tune's raw PBT logs
are copied to ``<run_dir>/tune_logs/``; ``summary.json`` has the native keys. Not supported:
``pbtune resume`` of a Tune run (Tune's own experiment restore is not wired in).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from pbtune.engines.base import Callback, run_summary
from pbtune.engines.node_options import driver_options
from pbtune.engines.population import initial_trials
from pbtune.engines.tune import schedulers, space
from pbtune.engines.tune.bridge import Bridge, ThresholdStopper, pbtune_id
from pbtune.engines.tune.trainable import WorkloadTrainable, read_checkpoint
from pbtune.errors import UserError


def _quiet() -> None:
    """Tune's console table and its experiment-sync warnings: pbtune prints its own summary."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1e9")
    # Benign with PBT pausing trials (a result file not yet synced); keep real errors.
    for name in ("ray.tune.logger", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)


class TuneEngine:
    """Runs one experiment through ``tune.Tuner``; emits pbtune events to ``callbacks``."""

    def __init__(self, cfg: Any, callbacks: Sequence[Callback] = ()) -> None:
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.metric: str = cfg.metric
        self.mode: str = cfg.mode
        self.run_dir: Path | None = None
        self.slots = 0
        self.startup_s = 0.0
        self.data_ref: Any = None
        trials = initial_trials(cfg)
        self.initial = [t.config for t in trials]
        self.seeds = [t.seed for t in trials]
        if cfg.tune.policy_file:  # replay: one trial, configs come from the file
            self.initial, self.seeds = self.initial[:1], self.seeds[:1]
        # Fail before anything starts: optional packages, PB2 bounds, optuna + PBT, the file.
        self._check = schedulers.make_scheduler(cfg)
        schedulers.make_search(cfg, self.initial)

    def prepare(self) -> None:
        """Connect to Ray, count the slots, load the data once into the object store."""
        if self.data_ref is not None:
            return
        from pbtune.cluster import cluster_nodes, connect, plan_for
        from pbtune.workloads import get
        from pbtune.workloads.registry import load_data

        start = time.time()
        res = self.cfg.resources
        connect(res.address)
        # Tune gives every trial one resource shape: GPU workers only when gpus_per_trial > 0.
        plan = plan_for(cluster_nodes(), res, cpu_workers="none")
        if not plan.workers:
            raise UserError("no worker slot can be placed: " + "; ".join(plan.problems)
                            + " (run `pbtune plan` for the per-node table)")
        self.slots = len(plan.workers)
        self.workers = [{"index": w.index, "node": w.node_id, "ip": w.ip} for w in plan.workers]
        self.data_ref = ray.put(load_data(get(self.cfg.workload),
                                           driver_options(self.cfg.options)))
        self.startup_s = time.time() - start

    def enable_recovery(self, run_dir: Path, header: dict[str, Any] | None = None) -> None:
        """Only records ``run_dir`` (Tune's raw PBT logs are copied there); no journal."""
        self.run_dir = Path(run_dir)

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def _tuner(self, bridge: Bridge, storage: str) -> tune.Tuner:
        from pbtune.workloads.registry import canonical_spec

        cfg, res = self.cfg, self.cfg.resources
        trainable = tune.with_parameters(
            WorkloadTrainable, workload=canonical_spec(cfg.workload), options=dict(cfg.options),
            seeds=self.seeds, data=self.data_ref, metric=self.metric, mode=self.mode,
            device="cuda" if res.gpus_per_trial > 0 else "cpu",
            threads=max(1, int(res.cpus_per_trial)), deterministic=cfg.deterministic,
            precision=res.precision.gpu if res.gpus_per_trial > 0 else res.precision.cpu)
        trainable = tune.with_resources(
            trainable, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
        replay = bool(cfg.tune.policy_file)
        search = schedulers.make_search(cfg, self.initial)
        return tune.Tuner(
            trainable,
            param_space={} if replay else space.param_space(cfg.param_space),
            tune_config=tune.TuneConfig(
                metric=self.metric, mode=self.mode,
                scheduler=schedulers.make_scheduler(cfg, bridge.on_decision),
                search_alg=search,
                num_samples=len(self.initial),
                # Optuna's Searcher honours it; the population generator must not (schedulers.py).
                max_concurrent_trials=self.slots if cfg.tune.search == "optuna" else None,
                reuse_actors=cfg.tune.reuse_actors,
                time_budget_s=cfg.stop.time_budget_s,
            ),
            run_config=tune.RunConfig(
                name=cfg.name, storage_path=storage, verbose=0, callbacks=[bridge],
                # In Jupyter, Tune's default reporter clears the cell's output (the status
                # pbtune printed there before) and leaves an empty HTML box; verbose=0 CLI: none.
                progress_reporter=tune.CLIReporter(),
                stop=ThresholdStopper(bridge, cfg.stop.max_iterations),
                # Checkpoints at perturbation boundaries (PBT also saves when it pauses a trial);
                # every one kept: deleting them races PBT restores (bench/_tune_baseline.py).
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=cfg.pbt.perturbation_interval, checkpoint_at_end=True),
                failure_config=tune.FailureConfig(
                    max_failures=cfg.fault_tolerance.max_failures),
            ),
        )

    def run(self) -> dict[str, Any]:
        """Run to the stopping criterion; returns the summary dict (native keys, engine "tune")."""
        _quiet()
        self.prepare()
        cfg = self.cfg
        random.seed(cfg.seed)  # Tune's PBT explores with the global random and numpy RNGs
        np.random.seed(cfg.seed % 2**32)
        t0 = time.time()
        bridge = Bridge(self._emit, metric=self.metric, mode=self.mode,
                        hyperparameters=_hyperparameters(cfg), seeds=self.seeds, t0=t0,
                        threshold=cfg.stop.metric_threshold)
        self._emit("on_start", {"workers": self.workers, "trials": [], "slots": self.slots,
                                "start_time": t0})
        storage = tempfile.mkdtemp(prefix="pbtune-tune-")
        try:
            grid = self._tuner(bridge, storage).fit()
            wall_s = time.time() - t0
            errors = {pbtune_id(r.metrics.get("trial_id", "x_0")) if r.metrics else "?":
                      _first_line(r.error) for r in grid if r.error is not None}
            best_state = self._best_state(bridge)
            self._copy_logs(bridge, Path(grid.experiment_path))
        finally:
            shutil.rmtree(storage, ignore_errors=True)
            for staged in bridge.staging:
                if staged.startswith(storage):
                    continue
                shutil.rmtree(staged, ignore_errors=True)  # Tune's driver-side staging copy
        stop_reason = "metric_threshold" if bridge.threshold_hit else (
            "time_budget" if cfg.stop.time_budget_s and wall_s >= cfg.stop.time_budget_s
            else "max_iterations")
        summary = self.summary(bridge, wall_s, errors, stop_reason)
        self._emit("on_end", summary, best_state)
        return summary

    def _best_state(self, bridge: Bridge) -> dict[str, Any] | None:
        """The best trial's state at its best iteration, from the ``best`` its checkpoints carry."""
        best = bridge.best
        if best is None:
            return None
        tune_trial = bridge.tune_trials.get(best["trial_id"])
        manager = getattr(getattr(tune_trial, "run_metadata", None), "checkpoint_manager", None)
        results = list(getattr(manager, "best_checkpoint_results", []) or [])
        for result in reversed(results):
            try:
                payload = read_checkpoint(result.checkpoint.path)
            except OSError:
                continue
            kept = payload.get("best")
            if kept is not None and kept[0] == best["iteration"]:
                return kept[2]
        return None

    def _copy_logs(self, bridge: Bridge, experiment: Path) -> None:
        """Tune's own ``pbt_global.txt`` / ``pbt_policy_*.txt`` → ``<run_dir>/tune_logs/``."""
        if self.run_dir is None:
            return
        target = self.run_dir / "tune_logs"
        for directory in {experiment, *map(Path, bridge.staging)}:
            for path in sorted(directory.glob("pbt_*.txt")):
                target.mkdir(exist_ok=True)
                shutil.copyfile(path, target / path.name)

    def summary(self, bridge: Bridge, wall_s: float, errors: dict[str, str],
                stop_reason: str) -> dict[str, Any]:
        """The native engine's summary keys, plus the Tune scheduler and searcher."""
        return run_summary(
            best=bridge.best, metric=self.metric, mode=self.mode, wall_s=wall_s,
            startup_s=self.startup_s, trials=bridge.trials.values(), slots=self.slots,
            exploits=bridge.exploits, population=len(self.initial), errors=errors, failures={},
            resumed_from=None, stop_reason=stop_reason, engine="tune", scheduling="tune",
            scheduler="replay" if self.cfg.tune.policy_file else self.cfg.tune.scheduler,
            search=self.cfg.tune.search,
        )


def _hyperparameters(cfg: Any) -> tuple[str, ...]:
    from pbtune.workloads import get

    return tuple(get(cfg.workload).hyperparameters)


def _first_line(error: BaseException) -> str:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__
