"""Driver loss and resume on a real local Ray instance (marked ``ray``).

The driver is killed with SIGKILL (nothing runs on exit) or interrupted; ``pbtune resume`` must
then finish the run in the same directory with every iteration recorded exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbtune.cli import main
from pbtune.engines import Callback
from tests.conftest import REPO
from tests.engines.test_fault_tolerance import journal, run_with_recovery
from tests.engines.test_native import TOY, read_rows, toy_config

pytestmark = pytest.mark.ray

SETS = {"workload": TOY, "population": 4, "seed": 3, "resources.slots": 2,
        "resources.reserve_cpus": 0, "stop.max_iterations": 12, "stop.metric_threshold": None,
        "pbt.perturbation_interval": 2, "checkpoint_interval": 2, "options": {"sleep": 0.1},
        "param_space": {"lr": {"uniform": [0.0, 1.0]}}}


def start_driver(root: Path, **extra) -> subprocess.Popen:
    argv = [sys.executable, "-m", "pbtune.cli", "run", "--quiet", "--results-dir", str(root)]
    for key, value in {**SETS, **extra}.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "PYTHONPATH": REPO, "RAY_ADDRESS": ""}
    return subprocess.Popen(argv, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_cut(root: Path, proc: subprocess.Popen, iteration: int, timeout: float = 60) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in root.glob("*/*/journal.jsonl"):
            events = []
            for line in path.read_text().splitlines():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:  # the driver is appending this one
                    break
            if any(e["event"] == "cut" and e["iteration"] >= iteration for e in events):
                return path.parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the driver made no progress")


def assert_complete(run_dir: Path, iterations: int) -> None:
    rows = read_rows(run_dir)  # fails on a duplicated (trial, iteration)
    assert sorted(rows) == ["t000", "t001", "t002", "t003"]
    for trial_rows in rows.values():
        assert sorted(trial_rows) == list(range(1, iterations + 1))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == 4 * iterations and summary["trials"] == 4
    decisions = (run_dir / "pbt_global.txt").read_text().splitlines()
    assert len(decisions) == summary["exploits"]
    assert len({tuple(json.loads(d)[:3]) for d in decisions}) == len(decisions)


def sigkill_driver_after_cut(root: Path, iteration: int = 4, **extra) -> Path:
    """Start a CLI driver (``extra``: more settings), SIGKILL it (and its local Ray) once a cut
    reaches ``iteration``; returns its run directory, as a crash leaves it."""
    proc = start_driver(root, **extra)
    try:
        run_dir = wait_for_cut(root, proc, iteration)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        try:  # the driver's own local Ray processes share its session
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return run_dir


def killed_resumed_and_reference(tmp_path: Path, **extra) -> tuple[Path, Path]:
    """SIGKILL a run (``extra``: more settings) after a cut, resume it to the end; run the same
    settings uninterrupted. Returns (resumed run dir, reference run dir)."""
    run_dir = sigkill_driver_after_cut(tmp_path / "killed", **extra)
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert_complete(run_dir, 12)
    argv = ["run", "--quiet", "--results-dir", str(tmp_path / "ref")]
    for key, value in {**SETS, **extra}.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    assert main(argv) == 0
    ref_dir = next((tmp_path / "ref").glob("*/*/journal.jsonl")).parent
    assert (run_dir / "pbt_global.txt").read_text() == (ref_dir / "pbt_global.txt").read_text()
    return run_dir, ref_dir


def test_sigkill_driver_then_resume(ray_local, tmp_path, capsys):
    run_dir = sigkill_driver_after_cut(tmp_path)
    assert not (run_dir / "summary.json").exists()
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out
    assert_complete(run_dir, 12)
    events = journal(run_dir)
    assert [e["event"] for e in events].count("resume") == 1 and events[-1]["event"] == "end"
    summary = json.loads((run_dir / "summary.json").read_text())
    cut = summary["resumed_from"]
    assert 4 <= cut < 12
    # compute_s and wall_s cover this session only (0.1 s sleep per iteration, 4 trials), so
    # the efficiency stays a share of this session's slot time; the total includes the kept part.
    assert 0.1 * 4 * (12 - cut) <= summary["compute_s"] < summary["compute_s_total"]
    assert summary["compute_s_total"] >= 0.1 * 4 * 12 and 0 < summary["efficiency"] <= 1
    assert main(["resume", str(run_dir)]) == 0  # finished: nothing to do, nothing changed
    assert "already finished" in capsys.readouterr().out


class Interrupt(Callback):
    """Raises KeyboardInterrupt (what Ctrl-C does in the driver) once a row reaches ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_result(self, trial, row):
        if row["iteration"] >= self.at:
            self.at = 10**9
            raise KeyboardInterrupt


def test_interrupt_then_truncated_checkpoint_falls_back(ray_local, tmp_path, capsys):
    cfg = toy_config(**{"stop.max_iterations": 10, "checkpoint_interval": 2,
                        "options": {"sleep": 0.02}})
    _, summary, run_dir = run_with_recovery(cfg, tmp_path, Interrupt(at=5))
    assert summary["stop_reason"] == "interrupted"
    cuts = [e for e in journal(run_dir) if e["event"] == "cut"]
    newest = cuts[-1]
    live = [r for r in newest["trials"].values() if r["checkpoint"]]
    victim = run_dir / live[0]["checkpoint"]["path"]
    victim.write_bytes(victim.read_bytes()[:7])  # truncated, as by a crash or a full disk
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "falling back to the previous checkpoint" in err and victim.name in err
    assert_complete(run_dir, 10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_resume_command(ray_local, tmp_path, capsys, sig):
    """Ctrl-C, and SIGTERM (a batch scheduler's pre-emption), checkpoint and exit 130 with the
    resume command. Deterministic: every trial waits at iteration 3 until the signal is sent,
    so the run cannot finish first (issue 14 item 12)."""
    hold = tmp_path / "hold"
    hold.touch()
    options = {**SETS["options"], "hold_file": str(hold), "hold_at": 3}
    proc = start_driver(tmp_path / "runs", options=options)
    try:
        run_dir = wait_for_cut(tmp_path / "runs", proc, 2)
        os.kill(proc.pid, sig)
        time.sleep(0.5)
        hold.unlink()
        _, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 130, err
    assert f"pbtune resume {run_dir}" in err
    assert journal(run_dir)[-1]["event"] == "cut"  # the interrupt checkpoints are the last word
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert_complete(run_dir, 12)


@pytest.mark.parametrize("journal_kept", [False, True])
def test_a_run_killed_before_training_is_started_over_by_resume(ray_local, tmp_path, capsys,
                                                                 journal_kept):
    """Killed after its folder was made (config.yaml, meta.json) but before any training: with
    no journal, or a journal with its header only, resume trains it from the start there."""
    from pbtune.config import dump_yaml
    from pbtune.results import create_run_dir, write_metadata

    cfg = toy_config(**{k: v for k, v in SETS.items() if k != "workload"})
    run_dir = create_run_dir(tmp_path, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    if journal_kept:
        from pbtune.api.finish import journal_header
        from pbtune.store.journal import Journal

        Journal(run_dir, journal_header(run_dir)).close()
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert_complete(run_dir, 12)
    if not journal_kept:
        assert "never started training; starting it over" in capsys.readouterr().err
