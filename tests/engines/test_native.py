"""End-to-end tests of the native engine on a real local Ray instance (small, marked ``ray``)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest

from pbtune.config import dump_yaml, load_config, resolve
from pbtune.engines import create_engine
from pbtune.results import ResultsWriter, create_run_dir, write_metadata

pytestmark = pytest.mark.ray

TOY = f"{Path(__file__).with_name('toy_workload.py')}:Counter"


def toy_config(**overrides):
    sets = {
        "workload": TOY, "population": 4, "seed": 3, "resources.slots": 2,
        "stop.max_iterations": 6, "stop.metric_threshold": None, "pbt.perturbation_interval": 2,
        "pbt.quantile_fraction": 0.25, "param_space": {"lr": {"uniform": [0.0, 1.0]}},
    }
    sets.update(overrides)
    return resolve(load_config(None, [f"{k}={json.dumps(v)}" for k, v in sets.items()], env={}))


def run(cfg, root: Path):
    run_dir = create_run_dir(root, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    engine = create_engine(cfg, [ResultsWriter(run_dir)])
    return engine.run(), run_dir


def read_rows(run_dir: Path) -> dict[str, dict[int, dict]]:
    rows: dict[str, dict[int, dict]] = defaultdict(dict)
    with (run_dir / "trials.csv").open() as f:
        for row in csv.DictReader(f):
            it = int(row["iteration"])
            assert it not in rows[row["trial_id"]], "an iteration was recorded twice"
            rows[row["trial_id"]][it] = row
    return rows


def test_pbt_run_exploits_exact_donor_state(ray_local, tmp_path):
    cfg = toy_config()
    summary, run_dir = run(cfg, tmp_path)
    rows = read_rows(run_dir)
    assert sorted(rows) == ["t000", "t001", "t002", "t003"]
    for trial_rows in rows.values():
        assert sorted(trial_rows) == list(range(1, 7))  # contiguous, every trial finished
    # Boundaries at 2 and 4 (6 is the end): quantile 0.25 of 4 → one exploit per boundary.
    decisions = [json.loads(line) for line in (run_dir / "pbt_global.txt").read_text().splitlines()]
    assert summary["exploits"] == len(decisions) == 2
    for target, donor, t_it, d_it, old_cfg, new_cfg in decisions:
        assert t_it == d_it  # ranked at equal progress
        donor_score = float(rows[donor][d_it]["score"])
        # The target's next score = donor's exact state + its explored lr.
        assert float(rows[target][t_it + 1]["score"]) == pytest.approx(donor_score + new_cfg["lr"])
        assert float(rows[target][t_it + 1]["config/lr"]) == pytest.approx(new_cfg["lr"])
        assert old_cfg["lr"] == pytest.approx(float(rows[donor][d_it]["config/lr"]))
        # The target was the worst at that iteration, the donor among the best.
        scores = {t: float(r[t_it]["score"]) for t, r in rows.items()}
        assert scores[target] == min(scores.values())
        assert scores[donor] >= sorted(scores.values())[-1]
        policy = (run_dir / f"pbt_policy_{target}.txt").read_text().splitlines()
        assert json.loads(policy[-1]) == [target, donor, t_it, d_it, old_cfg, new_cfg]
    assert summary["slots"] == 2 and summary["iterations"] == 24
    assert 0 < summary["efficiency"] <= 1
    best = summary["best"]
    all_scores = [float(r["score"]) for t in rows.values() for r in t.values()]
    assert best["metric"] == pytest.approx(max(all_scores))
    stored = json.loads((run_dir / "summary.json").read_text())
    assert stored["best"]["trial_id"] == best["trial_id"]
    for name in ("config.yaml", "meta.json", "trials.csv", "timeline.csv", "best_model.pt"):
        assert (run_dir / name).stat().st_size > 0, name


def test_same_seed_same_decisions(ray_local, tmp_path):
    first, dir1 = run(toy_config(), tmp_path / "a")
    second, dir2 = run(toy_config(scheduling="fifo"), tmp_path / "b")
    assert (dir1 / "pbt_global.txt").read_text() == (dir2 / "pbt_global.txt").read_text()
    assert first["best"] == second["best"]
    _, dir3 = run(toy_config(seed=4), tmp_path / "c")
    assert (dir3 / "pbt_global.txt").read_text() != (dir1 / "pbt_global.txt").read_text()


def test_random_search_when_pbt_off(ray_local, tmp_path):
    summary, run_dir = run(toy_config(**{"pbt.enabled": False}), tmp_path)
    assert summary["exploits"] == 0
    assert (run_dir / "pbt_global.txt").read_text() == ""
    rows = read_rows(run_dir)
    for trial_rows in rows.values():
        lrs = {r["config/lr"] for r in trial_rows.values()}
        assert len(lrs) == 1 and sorted(trial_rows) == list(range(1, 7))


def test_threshold_stops_the_experiment(ray_local, tmp_path):
    summary, run_dir = run(toy_config(**{"stop.metric_threshold": 1.0,
                                         "stop.max_iterations": 50}), tmp_path)
    assert summary["stop_reason"] == "metric_threshold"
    assert summary["best"]["metric"] >= 1.0
    assert summary["iterations"] < 4 * 50
    rows = read_rows(run_dir)
    assert sum(len(r) for r in rows.values()) == summary["iterations"]


def test_non_finite_trial_is_contained(ray_local, tmp_path):
    cfg = toy_config(**{"options": {"nan_above": 0.9}, "pbt.enabled": False,
                        "param_space": {"lr": {"choice": [0.5, 0.95]}}, "population": 4})
    summary, run_dir = run(cfg, tmp_path)
    rows = read_rows(run_dir)
    bad = {t for t, r in rows.items() if r[1]["config/lr"] == "0.95"}
    assert bad and set(summary["errors"]) == bad
    for t, r in rows.items():
        if t not in bad:
            assert sorted(r) == list(range(1, 7))


def test_exception_in_user_code_is_contained(ray_local, tmp_path):
    cfg = toy_config(**{"options": {"raise_at": 3}, "pbt.enabled": False, "population": 2})
    summary, _ = run(cfg, tmp_path)
    assert set(summary["errors"]) == {"t000", "t001"}
    assert all("boom in user code" in msg for msg in summary["errors"].values())


def test_digits_quick_pbt(ray_local, tmp_path):
    cfg = resolve(load_config(None, [
        "population=4", "stop.max_iterations=4", "pbt.perturbation_interval=2",
        "resources.slots=2", "options.width=4", "options.threads=1"], env={}))
    summary, run_dir = run(cfg, tmp_path)
    assert summary["exploits"] == 1
    assert summary["best"]["metric"] > 0.5
    import torch

    state = torch.load(run_dir / "best_model.pt", weights_only=False)
    assert state["iteration"] == summary["best"]["iteration"]
