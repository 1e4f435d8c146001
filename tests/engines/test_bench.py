"""``pbtune bench``: per-method configs, ratios, the table, and a real run on pbt-toy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pbtune.config import load_config
from pbtune.engines.bench import (
    DEFAULT_METHODS,
    METHODS,
    TUNE_METHODS,
    format_table,
    method_config,
    ratios,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("workload: pbt-toy\npopulation: 4\nseed: 9\ntune: {synch: true}\n")
    return load_config(path, env={})


def test_method_configs_differ_only_where_they_should(cfg) -> None:
    native, tune, synch, rand = (method_config(cfg, m, seed=3) for m in DEFAULT_METHODS)
    assert [c.seed for c in (native, tune, synch, rand)] == [3, 3, 3, 3]
    assert (native.engine, tune.engine, synch.engine, rand.engine) == (
        "native", "tune", "tune", "native")
    assert tune.tune.scheduler == synch.tune.scheduler == "pbt"
    assert tune.tune.synch is False and synch.tune.synch is True  # not the config's value
    assert native.pbt.enabled and not rand.pbt.enabled and native.pbt.policy == "pbt"
    assert native.pbt == tune.pbt == synch.pbt and native.population == rand.population == 4
    assert cfg.seed == 9 and cfg.engine == "native"  # the input is not mutated
    with pytest.raises(ValueError, match="valid: native-pbt, native-pb2"):
        method_config(cfg, "grid", 0)


def test_pb2_methods_change_only_the_policy_or_the_scheduler(cfg) -> None:
    native_pbt, tune_pbt = method_config(cfg, "native-pbt", 4), method_config(cfg, "tune-pbt", 4)
    native, tune = method_config(cfg, "native-pb2", 4), method_config(cfg, "tune-pb2", 4)
    assert (native.engine, native.seed, native.pbt.policy, native.pbt.enabled) == (
        "native", 4, "pb2", True)
    assert native.pbt.model_copy(update={"policy": "pbt"}) == native_pbt.pbt
    assert native.tune == cfg.tune  # the Tune settings are not the native engine's business
    assert (tune.engine, tune.seed, tune.tune.scheduler, tune.tune.search) == (
        "tune", 4, "pb2", "random")
    assert tune.tune.synch is False and tune.tune.policy_file is None  # as tune-pbt, not cfg
    assert tune.tune.model_copy(update={"scheduler": "pbt"}) == tune_pbt.tune
    assert tune.pbt == tune_pbt.pbt == cfg.pbt and cfg.pbt.policy == "pbt"  # input untouched
    # pbt.policy in the config does not leak into native-pbt, nor pbt.enabled: false
    odd = cfg.model_copy(update={"pbt": cfg.pbt.model_copy(update={"policy": "pb2",
                                                                   "enabled": False})})
    assert method_config(odd, "native-pbt", 0).pbt.policy == "pbt"
    assert method_config(odd, "native-pb2", 0).pbt.enabled


def test_method_lists() -> None:
    assert set(DEFAULT_METHODS) < set(METHODS) and set(TUNE_METHODS) < set(METHODS)
    assert {"native-pb2", "tune-pb2", "asha", "baseline"} == set(METHODS) - set(DEFAULT_METHODS)
    assert "tune-pb2" in TUNE_METHODS and "native-pb2" not in TUNE_METHODS


def test_pb2_ratios_pair_native_pb2_with_tune_pb2() -> None:
    medians = {"native-pbt": {"best": 1.0, "end_to_end_s": 1.0, "wall_s": 1.0},
               "native-pb2": {"best": 1.1, "end_to_end_s": 2.0, "wall_s": 1.0},
               "tune-pb2": {"best": 1.05, "end_to_end_s": 8.0, "wall_s": 4.0},
               "random": {"best": 0.9, "end_to_end_s": 1.0, "wall_s": 1.0}}
    out = ratios(medians, None, "max")
    assert out["native-pb2_over_tune-pb2_end_to_end"] == 0.25
    assert out["native-pb2_over_tune-pb2_wall"] == 0.25
    assert out["native-pb2_best_minus_tune-pb2"] == pytest.approx(0.05)
    assert out["native-pb2_best_minus_random"] == pytest.approx(0.2)
    assert out["tune-pb2_best_minus_random"] == pytest.approx(0.15)
    assert "native_over_tune-pb2_wall" not in out  # native PBT is not paired with Tune's PB2


def _row(best: float, e2e: float, wall: float) -> dict:
    return {"best": best, "end_to_end_s": e2e, "wall_s": wall}


def test_ratios_signs_and_per_seed_median() -> None:
    runs = {"native-pbt": [_row(0.9, 2.0, 1.0), _row(0.8, 4.0, 2.0), _row(0.7, 3.0, 1.0)],
            "tune-pbt": [_row(0.8, 10.0, 9.0), _row(0.6, 8.0, 8.0), _row(0.7, 30.0, 20.0)],
            "random": [_row(0.5, 2.0, 1.0), _row(0.6, 2.0, 1.0), _row(0.4, 2.0, 1.0)]}
    medians = {m: {"best": sorted(r["best"] for r in rows)[1],
                   "end_to_end_s": sorted(r["end_to_end_s"] for r in rows)[1],
                   "wall_s": sorted(r["wall_s"] for r in rows)[1]} for m, rows in runs.items()}
    out = ratios(medians, runs, "max")
    assert out["native_over_tune-pbt_end_to_end"] == 0.3  # 3 / 10
    assert out["native_over_tune-pbt_wall"] == pytest.approx(1 / 9, abs=1e-4)
    assert out["native_over_tune-pbt_end_to_end_per_seed"] == 0.2  # median of .2, .5, .1
    assert out["native_best_minus_tune-pbt"] == pytest.approx(0.1)
    assert out["native-pbt_best_minus_random"] == pytest.approx(0.3)
    assert "native_over_tune-pbt-synch_wall" not in out  # not run: no row
    flipped = ratios(medians, runs, "min")  # a loss: lower is better, gaps flip sign
    assert flipped["native_best_minus_tune-pbt"] == pytest.approx(-0.1)


def test_table_lists_every_method_and_ratio() -> None:
    result = {"metric": "score", "median": {
        "native-pbt": {"best": 1.1, "end_to_end_s": 1.0, "wall_s": 0.1, "efficiency": 0.05,
                       "exploits": 9},
        "random": {"best": None, "end_to_end_s": 1.0, "wall_s": 0.1, "efficiency": None,
                   "exploits": 0}},
        "ratios": {"native-pbt_best_minus_random": None}}
    table = format_table(result)
    assert "| native-pbt | 1.1000 | 1.0 | 0.1 | 0.05 | 9 |" in table
    assert "| random | – | 1.0 | 0.1 | – | 0 |" in table
    assert "- native-pbt_best_minus_random: –" in table


@pytest.mark.ray
def test_bench_runs_every_method_on_pbt_toy(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "pbtune.cli", "bench", "--workload", "pbt-toy",
           "--set", "population=4", "--set", "stop.max_iterations=6",
           "--set", "pbt.perturbation_interval=2", "--set", "stop.metric_threshold=null",
           "--seeds", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.iterdir()) == [out]  # no result directories
    result = json.loads(out.read_text())
    # One seed: every method is a whole run (Ray start, workers) and the suite's time counts.
    assert set(result["runs"]) == set(DEFAULT_METHODS) and result["seeds"] == 1
    for method, rows in result["runs"].items():
        assert [r["seed"] for r in rows] == [0], method
        for row in rows:
            assert row["errors"] == 0 and row["slots"] == 2, row
            # 4 trials x 6 iterations natively; Tune counts its reports, which an exploit that
            # restores a donor's checkpoint from another iteration can add to or skip.
            native = method in ("native-pbt", "random")
            assert row["iterations"] in (range(24, 25) if native else range(18, 31)), row
            assert -0.42 < row["best"] <= 1.2  # the toy starts at Q = -0.42 and tops out at 1.2
            assert row["end_to_end_s"] >= row["wall_s"] > 0
        if method in ("native-pbt", "tune-pbt-synch"):  # rank at equal progress: every
            assert all(row["exploits"] > 0 for row in rows), method  # boundary has a loser
    # (Tune's asynchronous PBT may exploit nothing on this monotone problem: not asserted.)
    assert all(row["exploits"] == 0 for row in result["runs"]["random"])
    for key in ("native_over_tune-pbt_end_to_end", "native_over_tune-pbt-synch_wall",
                "tune-pbt-synch_best_minus_random", "native-pbt_best_minus_random"):
        assert result["ratios"][key] is not None, key
    assert "| tune-pbt-synch |" in proc.stdout


@pytest.mark.ray
def test_bench_reports_failing_trials(tmp_path: Path) -> None:
    toy = REPO / "tests" / "engines" / "toy_workload.py"
    cmd = [sys.executable, "-m", "pbtune.cli", "bench", "--workload", f"{toy}:Counter",
           "--set", "population=2", "--set", "stop.max_iterations=2",
           "--set", "stop.metric_threshold=null", "--set", 'options={"raise_at": 2}',
           "--methods", "native-pbt"]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 trial(s) FAILED, first: RuntimeError: boom in user code" in proc.stdout
