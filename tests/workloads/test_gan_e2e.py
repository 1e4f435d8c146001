"""dcgan-digits through a real native run (Ray): PBT over two trials, the inception score in
trials.csv, each trial's samples at its best iteration in plots/ and in report.html."""

from __future__ import annotations

import json

import pytest

import pbtune
from pbtune.results.report import build_report
from tests.workloads.fixtures_gan import TINY

pytestmark = pytest.mark.ray


def test_a_gan_run_keeps_each_trials_best_samples(ray_local, tmp_path):
    result = pbtune.run(workload="dcgan-digits", results_dir=tmp_path, progress=False, overrides={
        "population": 2, "stop.max_iterations": 4, "pbt.perturbation_interval": 2,
        "stop.metric_threshold": None, "resources.slots": 2,
        "pbt.hyperparam_mutations": {"lr_g": {"loguniform": [1e-4, 1e-2]}},
        "options": {**TINY, "cache_dir": str(tmp_path / "cache")}})
    frame = result.trials
    assert len(frame) == 8 and result.summary["errors"] == {}
    assert {"inception_score", "loss_g", "loss_d", "train_loss_g", "train_loss_d"} <= set(frame)
    index = json.loads((result.run_dir / "plots" / "artifacts.json").read_text())
    assert set(index) == {"t000", "t001"}
    for trial_id, rows in frame.groupby("trial_id"):
        best = rows.loc[rows["inception_score"].idxmax()]
        entry = index[trial_id]["samples"]
        assert entry["iteration"] == best["iteration"]
        assert entry["metric"] == pytest.approx(best["inception_score"])
        assert (result.run_dir / "plots" / f"samples_{trial_id}.png").read_bytes()[:4] == \
            b"\x89PNG"
    assert (result.run_dir / "plots" / "losses.png").is_file()
    page = build_report(result.run_dir, plots=False).read_text()
    assert page.count('alt="samples t00') == 2
