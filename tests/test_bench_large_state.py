"""``bench/large_state.py`` at a tiny state: issue 19's side-by-side benchmark runs end to end
(its workload, both state paths, the peak polling, the table), so it cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.ray
def test_large_state_bench_runs_and_prints_its_row(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "large_state.py"),
                           "--state-mb", "8", "--store-mb", "8", "--compute-s", "0.05",
                           "--iterations", "2",
                           "--results", str(tmp_path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # today's path and the new one side by side, and the new one without reused copy buffers
    for path in ("never ", "always ", "always-nobuf "):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(path))
        fields = row.split()  # path, state M, plasma G, bound G, RSS M, USS M, ...
        assert fields[1] == "8" and float(fields[3]) >= 0 and float(fields[7]) > 0
        assert 0 < float(fields[9]) <= float(fields[7])  # driver USS: within its RSS
    assert len(list(tmp_path.glob("*/*/trials.csv"))) == 3


@pytest.mark.ray
def test_large_state_bench_deletes_its_checkpoints_unless_asked_to_keep_them(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # TMPDIR for the bench's folder only: Ray's socket paths must stay short
    env = {**os.environ, "RAY_ADDRESS": "", "TMPDIR": str(scratch), "RAY_TMPDIR": "/tmp"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "large_state.py"),
                           "--state-mb", "8", "--store-mb", "8", "--compute-s", "0.05",
                           "--iterations", "2", "--no-compare-buffers"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert any(line.startswith("always") for line in proc.stdout.splitlines())
    assert not list(scratch.glob("pbtune-large-state-*"))  # GBs of states at real sizes
