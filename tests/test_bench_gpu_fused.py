"""``bench/gpu_fused.py`` (K fused against K separate models / fractional workers on one GPU)
runs end to end at toy size on CPU, so the command prepared for a GPU machine cannot rot; it
shares its kernel table with ``bench/fused.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.ray
def test_gpu_fused_bench_runs_at_toy_size_on_cpu(tmp_path):
    out = tmp_path / "fused.json"
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_fused.py"), "--device",
                           "cpu", "--ks", "1", "2", "--engine-ks", "2", "--iterations", "2",
                           "--steps", "2", "--out", str(out)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    kernel = {(r["workload"], r["K"]): r for r in got["kernel"]}
    assert set(kernel) == {(w, k) for w in ("digits-cnn", "resnet18-cifar10") for k in (1, 2)}
    assert all(r["fused_samples_per_s"] > 0 and r["one_after_other_samples_per_s"] > 0
               for r in kernel.values())
    ways = [r["way"] for r in got["engine"]]
    assert ways == ["2 workers", "members_per_worker=2"]
    assert all(r["trial_iterations"] == 4 and r["samples_per_s"] > 0 for r in got["engine"])


@pytest.mark.parametrize("script", ["gpu_fused.py", "gpu_bloom.py"])
def test_a_gpu_bench_says_what_to_do_without_a_gpu(tmp_path, script):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
    assert "Traceback" not in proc.stderr
