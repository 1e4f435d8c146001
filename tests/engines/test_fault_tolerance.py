"""Fault tolerance on a real local Ray instance: worker loss, trial errors, disk full (``ray``)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import ray

from pbtune.cli import main
from pbtune.config import dump_yaml
from pbtune.engines import Callback, create_engine
from pbtune.results import ResultsWriter, create_run_dir, write_metadata
from tests.engines.test_native import TOY, read_rows, toy_config

pytestmark = pytest.mark.ray


def run_with_recovery(cfg, root: Path, *extra: Callback):
    run_dir = create_run_dir(root, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    engine = create_engine(cfg, [ResultsWriter(run_dir), *extra])
    engine.enable_recovery(run_dir)
    return engine, engine.run(), run_dir


def journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


class KillWorker(Callback):
    """Kills the worker that reported iteration ``at`` (once), like an OOM kill of the actor."""

    def __init__(self, at: int) -> None:
        self.at, self.engine, self.killed = at, None, None

    def on_result(self, trial, row):
        if self.killed is None and row["iteration"] >= self.at:
            self.killed = row["worker"]
            ray.kill(self.engine.pool.workers[row["worker"]])


def test_killed_worker_trials_continue_and_finish(ray_local, tmp_path):
    cfg = toy_config(**{"options": {"sleep": 0.05}, "stop.max_iterations": 8,
                        "checkpoint_interval": 4})
    killer = KillWorker(at=3)
    run_dir = create_run_dir(tmp_path, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    engine = create_engine(cfg, [ResultsWriter(run_dir), killer])
    killer.engine = engine
    engine.enable_recovery(run_dir)
    summary = engine.run()
    assert killer.killed is not None
    rows = read_rows(run_dir)  # asserts no iteration was recorded twice
    assert sorted(rows) == ["t000", "t001", "t002", "t003"]
    for trial_rows in rows.values():
        assert sorted(trial_rows) == list(range(1, 9))  # every trial at its final iteration
    assert summary["iterations"] == 32 and not summary["errors"]
    lost = [e for e in journal(run_dir) if e["event"] == "worker_lost"]
    assert lost and lost[0]["replaced"] is True
    assert sum(summary["failures"].values()) == len(lost)
    # Checkpoints every 4 iterations and at the end, verified by the journal's sha256.
    ckpts = [e for e in journal(run_dir) if e["event"] == "checkpoint"]
    assert {e["iteration"] for e in ckpts} == {4, 8}
    assert all((run_dir / e["path"]).is_file() for e in ckpts if e["iteration"] == 8)
    assert journal(run_dir)[-1]["event"] == "end"


def test_nan_trial_is_replaced_by_pbt(ray_local, tmp_path):
    cfg = toy_config(**{"options": {"nan_above": 0.9}, "pbt.quantile_fraction": 0.5,
                        "param_space": {"lr": {"choice": [0.5, 0.95]}},
                        "pbt.hyperparam_mutations": {"lr": [0.4, 0.5, 0.6]}})
    _, summary, run_dir = run_with_recovery(cfg, tmp_path)
    rows = read_rows(run_dir)
    bad = {t for t, r in rows.items() if r[1]["config/lr"] == "0.95"}
    assert bad, "the seed must sample at least one diverging trial"
    assert not summary["errors"]  # every errored trial was replaced from a donor
    assert set(summary["failures"]) == bad
    for tid in bad:
        assert max(rows[tid]) == 6  # it went on to the end with a donor's state
        text = (run_dir / "trials" / tid / "error.txt").read_text()
        assert "non-finite metric or loss" in text
    for tid in set(rows) - bad:
        assert sorted(rows[tid]) == list(range(1, 7))


def test_disk_full_is_a_clear_error_and_keeps_the_run(ray_local, tmp_path, capsys, monkeypatch):
    import pbtune.store.checkpoints as checkpoints

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoints, "write_state_file", full)
    sets = {"workload": TOY, "population": 2, "resources.slots": 2, "stop.max_iterations": 4,
            "stop.metric_threshold": None, "pbt.perturbation_interval": 2,
            "checkpoint_interval": 2, "param_space": {"lr": {"uniform": [0.0, 1.0]}}}
    argv = ["run", "--quiet", "--results-dir", str(tmp_path)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "No space left on device" in err and "pbtune resume" in err
    (run_dir,) = (p for p in tmp_path.glob("*/*") if p.is_dir())
    assert (run_dir / "journal.jsonl").is_file() and (run_dir / "config.yaml").is_file()


def test_results_dir_not_writable(ray_local, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    argv = ["run", "--quiet", "--results-dir", str(blocker), "--set", f"workload={TOY}",
            "--set", "population=2", "--set", "resources.slots=1", "--set", "stop.max_iterations=2",
            "--set", "pbt.perturbation_interval=1", "--set", 'param_space={"lr": [0.1, 0.2]}']
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "results directory" in err and "--results-dir" in err
    assert blocker.read_text() == "not a directory"
