"""A synthetic run directory, written the way ResultsWriter writes one (no Ray, no engine).

Used by the fast tests of plots, report and runs: 3 trials × 6 iterations of the toy Counter's
``score``, one exploit at iteration 2 (t000 <- t002) and one at 4 (t001 <- t002), a timeline on
two workers, ``summary.json`` with one errored trial.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

TOY = str(Path(__file__).resolve().parents[1] / "engines" / "toy_workload.py") + ":Counter"
LRS = {"t000": 0.1, "t001": 0.2, "t002": 0.5}
EXPLOITS = [("t000", "t002", 2, 0.9), ("t001", "t002", 4, 0.3)]  # target, donor, iteration, lr


def write_run(root: Path, name: str = "exp", run_id: str = "2024-01-01_00-00-00", *,
              started: float = 1_700_000_000.0, finished: bool = True) -> Path:
    run_dir = root / name / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"name: {name}\nworkload: {TOY}\nmetric: score\n"
                                         "mode: max\npopulation: 3\n")
    (run_dir / "meta.json").write_text(json.dumps({"started_unix": started, "host": "h",
                                                   "started_at": "2024-01-01T00:00:00"}))
    values = {t: [0.0] * 7 for t in LRS}
    lrs = {t: [lr] * 7 for t, lr in LRS.items()}
    for iteration in range(1, 7):
        for trial in LRS:
            for target, donor, at, new_lr in EXPLOITS:
                if trial == target and iteration == at + 1:
                    values[trial][at] = values[donor][at]
                    lrs[trial][iteration:] = [new_lr] * (7 - iteration)
            values[trial][iteration] = values[trial][iteration - 1] + lrs[trial][iteration]
    with (run_dir / "trials.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["trial_id", "iteration", "loss", "score", "train_loss", "config/lr",
                      "time_this_iter_s", "worker", "node", "timestamp", "node_cpu_percent",
                      "node_gpu_percent", "worker_rss_mb"])
        for trial in LRS:
            for it in range(1, 7):
                out.writerow([trial, it, -values[trial][it], values[trial][it], -values[trial][it],
                              lrs[trial][it], 0.1, it % 2, "10.0.0.1", started + it, 50.0, "",
                              100.0 + it])
    with (run_dir / "timeline.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["trial_id", "worker", "node", "start_s", "end_s", "iteration"])
        for n, trial in enumerate(LRS):
            for seg in range(3):
                start = seg * 1.0 + n * 0.3
                out.writerow([trial, n % 2, "10.0.0.1", start, start + 0.5, 2 * (seg + 1)])
    rows = [[t, d, at, at, {"lr": LRS[d]}, {"lr": lr}] for t, d, at, lr in EXPLOITS]
    (run_dir / "pbt_global.txt").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for row in rows:
        (run_dir / f"pbt_policy_{row[0]}.txt").write_text(json.dumps(row) + "\n")
    if finished:
        best = max((values[t][6], t) for t in LRS)
        summary = {"best": {"trial_id": best[1], "metric": best[0], "config": {"lr": 0.5},
                            "iteration": 6},
                   "metric": "score", "mode": "max", "wall_s": 12.5, "startup_s": 1.0,
                   "compute_s": 18.0, "slots": 2, "efficiency": 0.72, "iterations": 18,
                   "exploits": 2, "trials": 3, "errors": {"t001": "RuntimeError: boom <&>"},
                   "failures": {"t001": 1}, "stop_reason": "max_iterations", "engine": "native"}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir
