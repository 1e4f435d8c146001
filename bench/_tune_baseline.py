"""The Ray Tune side of ``engine_vs_tune.py``: PBT written the way Tune's tutorials write it.

Why a separate module: the baseline must look like what a Tune user would write (so the comparison
is with Tune as people use it, not with a tuned strawman or a crippled one), and keeping it apart
from the harness makes that easy to review. What "as the tutorials write it" means here, following
``ray/tune/examples/pbt_function.py`` and the PBT user guide:

* a *function trainable* that restores from ``tune.get_checkpoint()`` when there is one and then
  loops ``train → evaluate → tune.report(metrics, checkpoint=...)``, checkpointing at *every*
  report (``torch.save`` of the full state into a temporary directory);
* the data passed with ``tune.with_parameters`` (so it sits in the object store once), 1 CPU per
  trial through ``tune.with_resources``;
* ``PopulationBasedTraining`` with ``time_attr="training_iteration"``, the trial count above the
  concurrency (8 trials on 2 slots), so Tune time-multiplexes trials by pausing and restoring them.

Two deliberate, documented additions keep the comparison about the *engine* and not about the
population: the initial configs and model seeds are pbtune's own (passed as a ``grid_search`` over
an index, with ``sample_from`` reading the config for that index), and on exploit the target keeps
its own data-order RNG (``include_rng=False``), as pbtune does. Neither changes Tune's execution.

This module is imported by ``engine_vs_tune.py``; Ray workers import it too, which is why the
harness puts ``bench/`` on ``PYTHONPATH`` before ``ray.init``.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "state.pt"


def tune_domain(spec: Any) -> Any:
    """A Tune search-space object for one pbtune domain spec (``{"loguniform": [lo, hi]}``, ...).

    Why: both sides must mutate with the same distributions; converting the resolved config's
    ``hyperparam_mutations`` (rather than hard-coding Tune ranges) keeps them from drifting apart.
    Plain lists stay lists (Tune treats them as categorical choices); scalars stay constants.
    """
    from ray import tune

    if isinstance(spec, Mapping) and len(spec) == 1:
        ((kind, args),) = spec.items()
        args = list(args) if isinstance(args, (list, tuple)) else [args]
        makers = {
            "uniform": tune.uniform,
            "loguniform": tune.loguniform,
            "quniform": tune.quniform,
            "qloguniform": tune.qloguniform,
            "randint": tune.randint,
            "lograndint": tune.lograndint,
            "qrandint": tune.qrandint,
            "randn": tune.randn,
        }
        if kind in makers:
            return makers[kind](*args)
        if kind == "choice":
            return tune.choice(args[0] if len(args) == 1 and isinstance(args[0], list) else args)
        raise ValueError(f"cannot express domain {spec!r} in Ray Tune")
    if isinstance(spec, (list, tuple)):
        return list(spec)
    return spec


def _hyperparameters(config: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Only the workload's tunable keys (Tune's config also carries the population index)."""
    return {k: config[k] for k in names if k in config}


def make_train_fn(workload: str, options: Mapping[str, Any], seeds: Sequence[int]) -> Any:
    """The function trainable, closed over the workload name, its options and the trial seeds.

    ``config["idx"]`` is the trial's index in the shared initial population; it picks the seed
    (model initialisation, data order) and marks whose checkpoint a restore is reading.
    """
    options = dict(options)
    seeds = list(seeds)

    def train_fn(config: dict[str, Any], data: Any = None) -> None:
        import torch
        from ray import tune

        from pbtune.engines.node_options import resolve_here
        from pbtune.workloads import get

        cls = get(workload)
        idx = int(config["idx"])
        hyper = _hyperparameters(config, cls.hyperparameters)
        # Per-node options (slowdown: {"slow": 3.0}) resolved on this trial's node, as pbtune's
        # workers do, so both engines see the same slow nodes (heterogeneous.py).
        model = cls(hyper, data=data, options=resolve_here(options), seed=seeds[idx],
                    device="cpu")

        checkpoint = tune.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as checkpoint_dir:
                saved = torch.load(os.path.join(checkpoint_dir, STATE_FILE), weights_only=False)
            # A checkpoint written by another trial means PBT exploited: keep our own data order.
            model.set_state(saved["state"], include_rng=saved["idx"] == idx)
            model.apply_hyperparameters(hyper)  # the explored config, not the donor's

        max_iterations = int(config["max_iterations"])
        while model.iteration < max_iterations:
            start = time.perf_counter()
            train_metrics = model.train(1)
            eval_metrics = model.evaluate()
            compute_s = time.perf_counter() - start
            metrics = {
                **{f"train_{k}" if not k.startswith("train_") else k: v
                   for k, v in train_metrics.items()},
                **eval_metrics,
                "compute_s": compute_s,
                "step": model.iteration,
            }
            with tempfile.TemporaryDirectory() as tmp:
                torch.save({"state": model.get_state(), "idx": idx}, os.path.join(tmp, STATE_FILE))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    return train_fn


class _Collector:
    """Tune callback (wrapped below) summing what every report says, as the driver sees it.

    Why a callback and not only the ``ResultGrid``: each report passes through it exactly once,
    including reports from trials that were later exploited or paused, so compute time, the
    iteration count and the best metric ever reported are exact; the dataframes are a cross-check.
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.compute_s = 0.0
        self.iterations = 0
        self.best: dict[str, Any] | None = None
        self.staging: set[str] = set()
        # Epoch s: when the first reported iteration started, and the last report arrived
        # (fixed_overhead.py's "loop": the same span pbtune's rows give).
        self.first_start: float | None = None
        self.last_result: float | None = None


def _make_callback(collector: _Collector) -> Any:
    from ray import tune

    class CollectorCallback(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            collector.compute_s += float(result.get("compute_s", 0.0))
            collector.iterations += 1
            now = time.time()
            began = now - float(result.get("time_this_iter_s", 0.0))
            collector.first_start = min(began, collector.first_start or began)
            collector.last_result = now
            collector.staging.add(str(trial.local_experiment_path))
            value = float(result[collector.metric])
            if collector.best is None or value > collector.best["metric"]:
                collector.best = {"trial_id": trial.trial_id, "metric": value,
                                  "config": dict(trial.config),
                                  "iteration": int(result["training_iteration"])}

    return CollectorCallback()


class _CheckpointErrorFilter(logging.Filter):
    """Counts and hides Tune's "Error handling checkpoint" log records (with their tracebacks).

    Why: with PBT and ``num_to_keep``, Tune's checkpoint manager sometimes tries to delete a
    checkpoint directory that is already gone and logs a long traceback; the trial carries on.
    The benchmark reports how often that happened instead of flooding its table.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "Error handling checkpoint" in str(record.msg):
            self.count += 1
            return False
        return True


def _count_lines(paths: Sequence[Path]) -> int | None:
    for path in paths:
        if path.is_file():
            return sum(1 for line in path.read_text().splitlines() if line.strip())
    return None


def run_tune_pbt(
    *,
    workload: str,
    options: Mapping[str, Any],
    data: Any,
    initial_configs: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    mutations: Mapping[str, Any],
    metric: str,
    iterations: int,
    interval: int,
    quantile_fraction: float,
    resample_probability: float,
    slots: int,
    seed: int,
    reuse_actors: bool = False,
    num_to_keep: int | None = None,
) -> dict[str, Any]:
    """Run the population through Tune's PBT; returns the same headline numbers as pbtune.

    ``wall_s`` is ``tuner.fit()`` end to end (Tune has no separate start-up phase to subtract:
    it starts and stops trial actors throughout the run, and that is what is being measured).

    ``num_to_keep`` defaults to keeping every checkpoint. Why not the tutorials' ``2``: with 8
    trials on 2 slots an exploited target often waits paused while its donor writes two more
    checkpoints, Tune then deletes the checkpoint the target was told to restore, and the target
    fails with "Could not recover from checkpoint as it does not exist on storage anymore"
    (5 of 8 trials failed that way in our runs), which would make Tune's row both wrong and
    artificially short. Pass 2 to reproduce it.
    """
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    # Tune's PBT explores with the global `random` module (and numpy for some domains).
    random.seed(seed)
    np.random.seed(seed % 2**32)
    configs = [dict(c) for c in initial_configs]
    keys = sorted({k for c in configs for k in c})
    param_space: dict[str, Any] = {"idx": tune.grid_search(list(range(len(configs)))),
                                   "max_iterations": iterations}
    for key in keys:
        param_space[key] = tune.sample_from(
            lambda spec, key=key: configs[int(spec.config["idx"])][key]
        )
    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        metric=metric,
        mode="max",
        perturbation_interval=interval,
        hyperparam_mutations={k: tune_domain(v) for k, v in mutations.items()},
        quantile_fraction=quantile_fraction,
        resample_probability=resample_probability,
    )
    collector = _Collector(metric)
    storage = tempfile.mkdtemp(prefix="pbtune-bench-tune-")
    trainable = tune.with_resources(
        tune.with_parameters(make_train_fn(workload, options, seeds), data=data), {"cpu": 1}
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            scheduler=pbt,
            num_samples=1,  # × the 8-way grid over idx = 8 trials
            max_concurrent_trials=slots,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name="engine_vs_tune",
            storage_path=storage,
            stop={"training_iteration": iterations},
            verbose=0,
            callbacks=[_make_callback(collector)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=num_to_keep),
        ),
    )
    ckpt_errors = _CheckpointErrorFilter()
    controller_log = logging.getLogger("ray.tune.execution.tune_controller")
    controller_log.addFilter(ckpt_errors)
    try:
        start = time.perf_counter()
        grid = tuner.fit()
        wall_s = time.perf_counter() - start
        frames_compute = 0.0
        errors = []
        for result in grid:
            if result.error is not None:
                lines = [ln for ln in str(result.error).splitlines() if ln.strip()]
                errors.append(lines[-1].strip() if lines else type(result.error).__name__)
            df = result.metrics_dataframe
            if df is not None and "compute_s" in df:
                frames_compute += float(df["compute_s"].sum())
        exp_dir = Path(grid.experiment_path)
        pbt_files = [Path(p) / "pbt_global.txt" for p in sorted(collector.staging)]
        logged = _count_lines([exp_dir / "pbt_global.txt", *pbt_files])
    finally:
        controller_log.removeFilter(ckpt_errors)
        shutil.rmtree(storage, ignore_errors=True)
    compute_s = collector.compute_s
    return {
        "wall_s": round(wall_s, 3),
        "compute_s": round(compute_s, 3),
        "compute_s_dataframes": round(frames_compute, 3),
        "slots": slots,
        "efficiency": round(compute_s / (slots * wall_s), 4) if wall_s > 0 else 0.0,
        "best": collector.best,
        "iterations": collector.iterations,
        # pbt_global.txt lines; PBT's own counter if the file could not be found.
        "exploits": logged if logged is not None else int(pbt._num_perturbations),
        "exploits_counter": int(pbt._num_perturbations),
        "errors": errors,
        "checkpoint_errors": ckpt_errors.count,  # Tune's logged, non-fatal deletion errors
        "reuse_actors": reuse_actors,
        "num_to_keep": num_to_keep,
        "loop_s": round((collector.last_result or 0.0) - (collector.first_start or 0.0), 3),
    }
