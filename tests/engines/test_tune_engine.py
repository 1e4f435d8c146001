"""``engine: tune`` end to end on ``pbt-toy`` (no data, microseconds per step), marked ``ray``.

Why these checks: the Tune engine's promise is that every named scheduler runs any workload and
leaves the native engine's result layout, so ``report``, ``runs`` and ``replay`` read both. Each
test runs one scheduler through ``create_engine`` with the real results writer and reads the files
back: summary keys, rows per trial, PBT logs, early stopping by ASHA/HyperBand, replay's schedule.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest

from pbtune.config import dump_yaml, load_config, resolve
from pbtune.engines import create_engine
from pbtune.results import ResultsWriter, create_run_dir, write_metadata

pytestmark = pytest.mark.ray

NATIVE_KEYS = {"best", "metric", "mode", "wall_s", "startup_s", "compute_s", "slots",
               "efficiency", "iterations", "exploits", "trials", "errors", "stop_reason", "engine"}


def toy_config(**overrides):
    sets = {"workload": "pbt-toy", "engine": "tune", "population": 4, "seed": 1,
            "resources.slots": 2, "stop.max_iterations": 4, "stop.metric_threshold": None,
            "pbt.perturbation_interval": 2, "tune.synch": True}
    sets.update(overrides)
    return resolve(load_config(None, [f"{k}={json.dumps(v)}" for k, v in sets.items()], env={}))


def run(cfg, root: Path):
    run_dir = create_run_dir(root, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    engine = create_engine(cfg, [ResultsWriter(run_dir)])
    engine.enable_recovery(run_dir)
    return engine.run(), run_dir


def rows_by_trial(run_dir: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = defaultdict(list)
    with (run_dir / "trials.csv").open() as f:
        for row in csv.DictReader(f):
            rows[row["trial_id"]].append(row)
    return rows


def check_layout(summary: dict, run_dir: Path, cfg) -> dict[str, list[dict]]:
    stored = json.loads((run_dir / "summary.json").read_text())
    assert NATIVE_KEYS <= set(stored) and stored["engine"] == "tune"
    assert stored["errors"] == {} and stored["trials"] == cfg.population
    rows = rows_by_trial(run_dir)
    assert sorted(rows) == [f"t{i:03d}" for i in range(cfg.population)]
    assert summary["iterations"] == sum(len(r) for r in rows.values())
    scores = [float(r["score"]) for trial in rows.values() for r in trial]
    assert summary["best"]["metric"] == pytest.approx(max(scores))
    assert {"config/h0", "config/h1", "worker", "node"} <= set(next(iter(rows.values()))[0])
    assert (run_dir / "timeline.csv").stat().st_size > 0
    return rows


@pytest.mark.parametrize("scheduler", ["pbt", "pb2"])
def test_pbt_schedulers_exploit_and_log_in_pbtune_ids(ray_local, tmp_path, scheduler):
    if scheduler == "pb2":
        pytest.importorskip("GPy")
    cfg = toy_config(**{"tune.scheduler": scheduler})
    summary, run_dir = run(cfg, tmp_path)
    rows = check_layout(summary, run_dir, cfg)
    for trial_rows in rows.values():
        assert int(trial_rows[-1]["iteration"]) == cfg.stop.max_iterations
    decisions = [json.loads(x) for x in (run_dir / "pbt_global.txt").read_text().splitlines()]
    assert summary["exploits"] == len(decisions) >= 1
    for target, donor, _t_it, _d_it, _old_cfg, new_cfg in decisions:
        assert target in rows and donor in rows and set(new_cfg) == {"h0", "h1"}
        assert (run_dir / f"pbt_policy_{target}.txt").is_file()
        assert 0.0 <= new_cfg["h0"] <= 1.0  # pbt.clip honoured for Tune's explore too
    assert list((run_dir / "tune_logs").glob("pbt_global.txt"))  # Tune's raw log, copied
    assert (run_dir / "best_model.pt").is_file()


@pytest.mark.parametrize("scheduler", ["asha", "hyperband"])
def test_early_stopping_schedulers_stop_some_trials(ray_local, tmp_path, scheduler):
    cfg = toy_config(**{"tune.scheduler": scheduler, "population": 6, "stop.max_iterations": 4,
                        "tune.reduction_factor": 2})
    summary, run_dir = run(cfg, tmp_path)
    rows = check_layout(summary, run_dir, cfg)
    assert summary["iterations"] < cfg.population * cfg.stop.max_iterations
    assert max(len(r) for r in rows.values()) == cfg.stop.max_iterations
    assert summary["exploits"] == 0


def test_fifo_is_random_search_over_the_native_population(ray_local, tmp_path):
    from pbtune.engines.population import initial_trials

    cfg = toy_config(**{"tune.scheduler": "fifo"})
    summary, run_dir = run(cfg, tmp_path)
    rows = check_layout(summary, run_dir, cfg)
    assert summary["iterations"] == cfg.population * cfg.stop.max_iterations
    # The same seed gives the native engine's initial configs: comparisons share a population.
    for trial in initial_trials(cfg):
        assert float(rows[trial.trial_id][0]["config/h0"]) == pytest.approx(trial.config["h0"])
    assert (run_dir / "pbt_global.txt").read_text() == ""


def test_replay_follows_the_policy_file(ray_local, tmp_path):
    policy = tmp_path / "pbt_policy_t001.txt"
    row = ["t001", "t000", 2, 2, {"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}]
    policy.write_text(json.dumps(row) + "\n")
    cfg = toy_config(**{"tune.policy_file": str(policy)})
    summary, run_dir = run(cfg, tmp_path)
    (trial,) = rows_by_trial(run_dir).values()
    hs = [(int(r["iteration"]), float(r["config/h0"]), float(r["config/h1"])) for r in trial]
    assert hs == [(1, 1.0, 0.0), (2, 1.0, 0.0), (3, 0.0, 1.0), (4, 0.0, 1.0)]
    # h1 = 0 for two iterations: θ₁ stayed at its start, then moved.
    assert float(trial[1]["theta1"]) == pytest.approx(0.9)
    assert float(trial[3]["theta1"]) < 0.9
    assert summary["scheduler"] == "replay"


def test_per_node_slowdown_is_resolved_on_tune_actors(ray_local, tmp_path):
    from tests.engines.test_native import TOY

    def median_iter_s(label: str) -> float:
        cfg = toy_config(**{"workload": TOY, "tune.scheduler": "fifo", "population": 2,
                            "stop.max_iterations": 3, "param_space": {"lr": 0.1},
                            "pbt.hyperparam_mutations": {"lr": [0.1]},
                            "options": {"sleep": 0.05, "slowdown": {label: 4.0}}})
        summary, run_dir = run(cfg, tmp_path / label)
        assert summary["errors"] == {}  # a mapping reaching the workload would fail it
        times = sorted(float(r["time_this_iter_s"]) for t in rows_by_trial(run_dir).values()
                       for r in t)
        return times[len(times) // 2]

    # Every node offers the resource CPU and none "no-such-resource": 4x slower vs full speed.
    slow, fast = median_iter_s("CPU"), median_iter_s("no-such-resource")
    assert 0.04 <= fast < 0.1 and slow >= 0.19
