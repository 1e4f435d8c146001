"""``bench/gpu_check.py --dry-run``: the GPU check script runs end to end on CPU at tiny sizes, so
it cannot rot between the (rare) sessions that have a GPU to run it on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.ray
def test_gpu_check_dry_run_records_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run",
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["environment"]["device"] == "cpu"
    assert report["syncs_per_step"] is None  # CUDA only
    assert {(r["precision"], r["channels_last"]) for r in report["throughput"]} == {
        ("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)}
    assert all(r["images_per_s"] > 0 for r in report["throughput"])
    assert report["repeatable"]["deterministic_true"] is True
    assert report["state_on_cpu"]["state_devices"] == ["cpu"]
    assert report["population"]["fractional"]["slots"] == 2
    assert "images/s" in proc.stdout  # the table
