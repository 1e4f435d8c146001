"""``pbtune run --exp-times N``: N repetitions with seeds seed.., and Running_Results.txt."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest

from pbtune.cli import main
from pbtune.results.repeat import COLUMNS, RunningResults, read_running_results

TOY = f"{Path(__file__).parents[1] / 'engines' / 'toy_workload.py'}:Counter"


def fake_cfg(seed: int) -> SimpleNamespace:
    return SimpleNamespace(name="e", workload="w", metric="score", mode="max", population=2,
                           seed=seed, stop=SimpleNamespace(max_iterations=3),
                           resources=SimpleNamespace(cpus_per_trial=2.0))


def test_format_round_trips_and_blocks_append(tmp_path):
    for block in range(2):
        log = RunningResults(tmp_path, fake_cfg(10), 3)
        for rep, (wall, best) in enumerate([(10.0, 0.5), (12.0, 0.7), (14.0, 0.9)], 1):
            summary = {"wall_s": wall + block, "best": {"metric": best}, "compute_s": 5.0,
                       "slots": 2, "stop_reason": "max_iterations"}
            log.add(rep, fake_cfg(9 + rep), summary, tmp_path / f"r{rep}")
        log.finish()
    blocks = read_running_results(tmp_path / "Running_Results.txt")
    assert len(blocks) == 2
    block = blocks[1]
    assert "--exp-times 3" in block["header"] and "seeds=10..12" in block["header"]
    assert [r["seed"] for r in block["rows"]] == [10, 11, 12]
    assert block["mean"]["runtime_s"] == pytest.approx(13.0)
    assert block["std"]["runtime_s"] == pytest.approx(2.0)  # sample std of 11, 13, 15
    assert block["mean"]["best_metric"] == pytest.approx(0.7)
    assert block["rows"][0]["cpu_s"] == pytest.approx(10.0)  # compute_s × cpus_per_trial
    lines = (tmp_path / "Running_Results.txt").read_text().splitlines()
    assert lines[1].split("\t") == list(COLUMNS)


@pytest.mark.ray
def test_exp_times_runs_n_seeds_and_appends_rows_and_mean_std(ray_local, tmp_path, capsys):
    argv = ["run", "--workload", TOY, "--results-dir", str(tmp_path), "--quiet", "--no-plots",
            "--exp-times", "2", "--seed", "7"]
    for item in ("population=2", "resources.slots=2", "stop.max_iterations=3",
                 "stop.metric_threshold=null", "pbt.perturbation_interval=2"):
        argv += ["--set", item]
    assert main(argv) == 0
    text = (tmp_path / "Running_Results.txt").read_text()
    lines = [line for line in text.splitlines() if line]
    assert len(lines) == 2 + 2 + 1  # header, columns, 2 repetitions, mean ± std
    assert lines[-1].startswith("mean±std\t")
    (block,) = read_running_results(tmp_path / "Running_Results.txt")
    assert [r["rep"] for r in block["rows"]] == [1, 2]
    assert [r["seed"] for r in block["rows"]] == [7, 8]
    for row in block["rows"]:
        run_dir = Path(row["run_dir"])
        summary = json.loads((run_dir / "summary.json").read_text())
        # end to end: start-up included (issue 14 item 11)
        assert row["runtime_s"] >= summary["wall_s"] + summary["startup_s"] - 1e-3
        assert row["gpu_s"] == 0.0
        assert row["best_metric"] == pytest.approx(summary["best"]["metric"], abs=1e-6)
        assert row["slots"] == summary["slots"] == 2
        assert row["cpu_s"] == pytest.approx(summary["compute_s"], abs=1e-3)  # 1 CPU per trial
        assert row["peak_rss_mb"] > 10  # a Python worker's resident memory, in MiB
        assert f"seed: {int(row['seed'])}" in (run_dir / "config.yaml").read_text()
    bests = [r["best_metric"] for r in block["rows"]]
    assert block["mean"]["best_metric"] == pytest.approx(statistics.fmean(bests), abs=1e-5)
    assert block["std"]["best_metric"] == pytest.approx(statistics.stdev(bests), abs=1e-5)
    assert len(set(bests)) > 1  # different seeds, different populations
    assert "2 repetitions" in capsys.readouterr().out
