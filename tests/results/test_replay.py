"""``pbtune replay``: one trial retrained from scratch on its recorded schedule (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pbtune.cli import main
from pbtune.results.replay import read_policy_file

TOY = f"{Path(__file__).parents[1] / 'engines' / 'toy_workload.py'}:Counter"

# Ray Tune's exact row format: string tags "<index>_<param>=<value>", target and donor
# iterations, the donor's full config (Tune configs may carry keys that are not hyperparameters)
# and the new config.
RAY_TUNE_POLICY = [
    ["0_lr=0.01", "1_lr=0.1", 4, 4, {"lr": 0.1, "batch_size": 32}, {"lr": 0.5, "batch_size": 32}],
    ["0_lr=0.5", "3_lr=0.5", 6, 7, {"lr": 0.5, "batch_size": 32}, {"lr": 0.2, "batch_size": 32}],
]


def test_ray_tune_policy_file_switches_configs_at_recorded_iterations(tmp_path, capsys):
    policy = tmp_path / "pbt_policy_c5ad1_00000.txt"
    policy.write_text("".join(json.dumps(row) + "\n" for row in RAY_TUNE_POLICY))
    config = tmp_path / "exp.yaml"
    config.write_text(f"name: tunerun\nworkload: {TOY}\nstop:\n  max_iterations: 10\n")
    out = tmp_path / "replay"
    assert main(["replay", "--policy-file", str(policy), "--config", str(config),
                 "--out", str(out)]) == 0
    rows = pd.read_csv(out / "trials.csv")
    assert list(rows["iteration"]) == list(range(1, 11))
    assert set(rows["trial_id"]) == {"c5ad1_00000"}
    # first row's old_config (the donor's) until iteration 4 is done, then each new_config once
    # its donor iteration (4, then 7) has completed
    expected = [0.1] * 4 + [0.5] * 3 + [0.2] * 3
    assert list(rows["config/lr"]) == pytest.approx(expected)
    running = 0.0
    for lr, score in zip(expected, rows["score"], strict=True):  # the Counter adds lr each time
        running += lr
        assert score == pytest.approx(running)
    schedule = json.loads((out / "schedule.json").read_text())
    assert [s["after_iteration"] for s in schedule["switches"]] == [4, 7]
    assert schedule["ignored_keys"] == ["batch_size"]  # not a hyperparameter of the workload
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["metric"] == pytest.approx(sum(expected))
    assert "2 scheduled switches" in capsys.readouterr().out


def test_bad_policy_rows_and_missing_inputs_are_user_errors(tmp_path, capsys):
    bad = tmp_path / "pbt_policy_x.txt"
    bad.write_text('["a", "b", 1, 1, {"lr": 0.1}]\n')
    config = tmp_path / "exp.yaml"
    config.write_text(f"workload: {TOY}\n")
    assert main(["replay", "--policy-file", str(bad), "--config", str(config)]) == 2
    assert f"{bad}:1 is not a PBT policy row" in capsys.readouterr().err
    assert main(["replay", "--policy-file", str(bad)]) == 2
    assert "needs --config" in capsys.readouterr().err
    assert main(["replay", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.ray
def test_replay_of_a_real_run_follows_each_trials_lineage(ray_local, tmp_path, capsys):
    argv = ["run", "--workload", TOY, "--results-dir", str(tmp_path), "--quiet", "--no-plots"]
    for item in ("population=4", "seed=5", "resources.slots=2", "stop.max_iterations=8",
                 "stop.metric_threshold=null", "pbt.perturbation_interval=2"):
        argv += ["--set", item]
    assert main(argv) == 0
    (run_dir,) = [p for p in (tmp_path / "quickstart").iterdir() if p.is_dir()]
    original = pd.read_csv(run_dir / "trials.csv")
    exploited = {p.name[len("pbt_policy_"):-4] for p in run_dir.glob("pbt_policy_*.txt")}
    assert exploited and len(exploited) < 4  # 3 boundaries, one exploit each: someone never
    for trial in ("t000", "t001", "t002", "t003"):
        assert main(["replay", str(run_dir), "--trial", trial]) == 0
        replayed = pd.read_csv(run_dir / f"replay_{trial}" / "trials.csv")
        mine = original[original["trial_id"] == trial].sort_values("iteration")
        assert list(replayed["iteration"]) == list(range(1, 9))
        lrs = list(replayed["config/lr"])
        if trial in exploited:
            schedule = read_policy_file(run_dir / f"pbt_policy_{trial}.txt")
            assert lrs[0] == pytest.approx(schedule.initial["lr"])
            for after, new in schedule.changes:  # switched exactly after the donor iteration
                assert lrs[after] == pytest.approx(new["lr"])
            assert lrs == pytest.approx([schedule.config_for(i)["lr"] for i in range(1, 9)])
        else:  # never exploited: its initial config throughout
            assert lrs == pytest.approx([mine["config/lr"].iloc[0]] * 8)
        # the Counter is deterministic and exploits copy exact state: the schedule alone
        # reproduces the trial's final score
        assert replayed["score"].iloc[-1] == pytest.approx(mine["score"].iloc[-1])
        assert f"(original run: {mine['score'].iloc[-1]:.4f})" in capsys.readouterr().out
