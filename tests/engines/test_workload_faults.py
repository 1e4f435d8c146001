"""A faulty workload fails alone, or stops the command with one line — never the driver with a
traceback (issue 14 item 7)."""

from __future__ import annotations

import json

import pytest

from pbtune.cli import main
from pbtune.engines.native.engine import NativeEngine
from pbtune.engines.simulated import SimulatedExecutor
from pbtune.errors import UserError
from tests.engines.test_fault_tolerance import run_with_recovery
from tests.engines.test_native import TOY, toy_config


def test_load_data_failure_is_one_line_before_anything_starts(tmp_path):
    cfg = toy_config(options={"data_error": "digits.npz is missing"})
    with pytest.raises(UserError, match=r"load_data failed with FileNotFoundError: digits\.npz"):
        SimulatedExecutor(cfg, (1.0,))


@pytest.mark.parametrize("speeds", [(1.0,), (1.0, 2.0)])
def test_a_metric_of_the_wrong_type_fails_its_trial_alone(tmp_path, speeds):
    cfg = toy_config(options={"bad_metric_above": 0.7}, seed=5)
    summary = NativeEngine(cfg, [], executor=SimulatedExecutor(cfg, speeds)).run()
    errors = summary["errors"]
    assert errors and len(errors) < cfg.population  # some trials failed, the others finished
    assert all("metric 'score'" in e and "str" in e and "not a number" in e
               for e in errors.values())
    assert summary["iterations"] > 0


@pytest.mark.ray
def test_load_data_failure_through_the_cli(ray_local, tmp_path, capsys):
    code = main(["run", "--quiet", "--results-dir", str(tmp_path), "--workload", TOY,
                 "--set", 'options={"data_error": "data/x.bin is missing"}',
                 "--set", "population=2", "--set", "stop.max_iterations=2",
                 "--set", "pbt.perturbation_interval=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: workload toy-counter: load_data failed")
    assert "Traceback" not in "\n".join(err)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.ray
def test_an_unpicklable_state_fails_its_trial_alone_on_ray(ray_local, tmp_path):
    cfg = toy_config(options={"state_error_above": 0.7}, seed=5)
    _engine, summary, run_dir = run_with_recovery(cfg, tmp_path)
    assert summary["errors"] and len(summary["errors"]) < cfg.population
    assert all("cannot be pickled" in e and "get_state()" in e
               for e in summary["errors"].values())
    assert json.loads((run_dir / "summary.json").read_text())["stop_reason"] == "max_iterations"


@pytest.mark.ray
def test_a_run_in_which_every_trial_failed_exits_non_zero(ray_local, tmp_path, capsys):
    code = main(["run", "--quiet", "--no-plots", "--results-dir", str(tmp_path), "--workload",
                 TOY, "--set", 'options={"raise_at": 1}', "--set", "population=2",
                 "--set", "stop.max_iterations=2", "--set", "pbt.perturbation_interval=1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error: every trial failed (first: RuntimeError: boom in user code)" in err


def test_an_unpicklable_state_fails_its_trial_alone_in_process():
    """The same check runs where the segment runs, so the simulated executor sees it too."""
    cfg = toy_config(options={"state_error_above": 0.7}, seed=5)
    summary = NativeEngine(cfg, [], executor=SimulatedExecutor(cfg, (1.0, 2.0))).run()
    assert summary["errors"] and len(summary["errors"]) < cfg.population
    assert all("cannot be pickled" in e for e in summary["errors"].values())
