"""`pbtune run` as a user runs it: a subprocess with its own local Ray, tiny digits budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pbtune import __version__
from pbtune.config import load_config

pytestmark = pytest.mark.ray


def test_run_writes_the_documented_layout(tmp_path):
    cmd = [sys.executable, "-m", "pbtune.cli", "run", "--results-dir", str(tmp_path), "--quiet",
           "--set", "population=2", "--set", "stop.max_iterations=2",
           "--set", "pbt.perturbation_interval=1", "--set", "options.width=4",
           "--set", "name=e2e", "--seed", "7"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best accuracy" in proc.stdout
    (run_dir,) = (tmp_path / "e2e").iterdir()
    for name in ("config.yaml", "meta.json", "trials.csv", "pbt_global.txt", "best_model.pt",
                 "summary.json", "timeline.csv"):
        assert (run_dir / name).exists(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"best", "wall_s", "compute_s", "slots", "efficiency", "iterations",
            "exploits"} <= set(summary)
    assert summary["iterations"] == 4
    assert set(summary["best"]) >= {"trial_id", "metric", "config", "iteration"}
    # Interval 1 with 2 trials: one exploit at iteration 1 (iteration 2 is the end).
    assert summary["exploits"] == 1
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["version"] == __version__ and meta["git_revision"]
    # The stored config is the resolved one and loads back as is.
    stored = load_config(run_dir / "config.yaml", env={})
    assert stored.seed == 7 and stored.population == 2 and stored.metric == "accuracy"
