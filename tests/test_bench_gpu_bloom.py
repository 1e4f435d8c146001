"""``bench/gpu_bloom.py`` (the GPU BLOOM-560M step time and 4-trial PBT iteration) runs end to end
at toy size on CPU, so the one command prepared for a GPU machine cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("transformers")


@pytest.mark.ray
def test_gpu_bloom_bench_runs_at_toy_size_on_cpu(tmp_path):
    out = tmp_path / "bloom.json"
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_bloom.py"), "--tiny",
                           "--device", "cpu", "--steps", "2", "--pbt-steps", "2",
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["steps"][0]["ms_per_step"] > 0 and got["steps"][0]["params_m"] > 0
    assert got["pbt"][0]["exploits"] >= 1 and got["pbt"][0]["slots"] >= 1
