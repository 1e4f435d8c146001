"""Fused workers on a real local Ray instance (marked ``ray``): the coordinator sees K lanes
per worker and decides per trial; rows, PBT decisions, checkpoints and resume are per trial,
as an unfused run's. The workload is float64 (tests/workloads/fusion_examples.py), so a fused
run and an unfused one agree to ~1e-12 and make the same PBT decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engines.test_fault_tolerance import KillWorker, journal
from tests.engines.test_held_ray import run
from tests.engines.test_native import read_rows, toy_config
from tests.engines.test_resume import killed_resumed_and_reference

pytestmark = pytest.mark.ray

MLP = f"{Path(__file__).parents[1] / 'workloads' / 'fusion_examples.py'}:Mlp64"
SETS = {"workload": MLP, "options": {}, "metric": "accuracy", "mode": "max",
        "param_space": {"lr": {"loguniform": [0.01, 0.3]}, "momentum": {"uniform": [0.0, 0.95]},
                        "weight_decay": 0.001, "batch_size": 16},
        "pbt.hyperparam_mutations": {"lr": {"loguniform": [0.01, 0.3]}}}
FUSED = {"resources.members_per_worker": 2, "resources.fuse": "always"}


def cfg(**extra):
    return toy_config(**{**SETS, **extra})


def rows_close(a: Path, b: Path) -> None:
    """Same trials, iterations and configs; metrics equal to float64 rounding."""
    ra, rb = read_rows(a), read_rows(b)
    assert ra.keys() == rb.keys()
    for trial in ra:
        assert ra[trial].keys() == rb[trial].keys()
        for it, row in ra[trial].items():
            ref = rb[trial][it]
            assert row["config/lr"] == ref["config/lr"], (trial, it)
            for key in ("accuracy", "loss", "train_loss"):
                assert float(row[key]) == pytest.approx(float(ref[key]), abs=1e-9), (trial, key)


def test_a_fused_run_decides_and_records_as_the_unfused_run(ray_local, tmp_path):
    _e, ref, ref_dir = run(cfg(), tmp_path / "plain")
    engine, got, run_dir = run(cfg(**FUSED), tmp_path / "fused")
    assert engine.pool.size == 4 and len({id(w) for w in engine.pool.workers}) == 2
    assert got["exploits"] == ref["exploits"] > 0
    assert (run_dir / "pbt_global.txt").read_text() == (ref_dir / "pbt_global.txt").read_text()
    rows_close(run_dir, ref_dir)
    shapes = {r["worker_shape"] for t in read_rows(run_dir).values() for r in t.values()}
    assert shapes == {"fused2(cpu:1)"}
    assert got["best"]["metric"] == pytest.approx(ref["best"]["metric"], abs=1e-9)


def test_a_killed_fused_worker_is_replaced_once_and_its_trials_finish(ray_local, tmp_path):
    killer = KillWorker(at=3)
    engine, summary, run_dir = run(cfg(**FUSED, **{"stop.max_iterations": 8,
                                                  "checkpoint_interval": 4}),
                                   tmp_path, killer)
    assert killer.killed is not None
    rows = read_rows(run_dir)  # no iteration recorded twice
    assert all(sorted(r) == list(range(1, 9)) for r in rows.values()) and len(rows) == 4
    lost = [e for e in journal(run_dir) if e["event"] == "worker_lost"]
    assert lost and all(e["replaced"] for e in lost)
    # Both lanes of the killed worker run on one new process, not one each.
    assert len({id(w) for w in engine.pool.workers}) == 2
    assert not summary["errors"]


def test_sigkill_of_a_fused_run_then_resume_gives_the_uninterrupted_run(ray_local, tmp_path):
    run_dir, ref_dir = killed_resumed_and_reference(tmp_path, **SETS, **FUSED)
    rows_close(run_dir, ref_dir)


def test_a_workload_that_cannot_fuse_runs_its_members_one_after_the_other(ray_local, tmp_path,
                                                                         capsys):
    _e, ref, ref_dir = run(toy_config(), tmp_path / "plain")
    _e, got, run_dir = run(toy_config(**{"resources.members_per_worker": 2}), tmp_path / "k2")
    assert "does not fuse (fusible = False)" in capsys.readouterr().err
    assert got["exploits"] == ref["exploits"] and got["iterations"] == ref["iterations"]
    assert (run_dir / "pbt_global.txt").read_text() == (ref_dir / "pbt_global.txt").read_text()
    assert {(t, i): r["score"] for t, rs in read_rows(run_dir).items() for i, r in rs.items()} \
        == {(t, i): r["score"] for t, rs in read_rows(ref_dir).items() for i, r in rs.items()}
