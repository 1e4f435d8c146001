"""Gangs: a trial trained by W worker processes in one torch.distributed group (gloo here).

What only real processes show: the ranks stay in step and equal (weights, optimiser state,
BatchNorm buffers), a state taken from rank 0 loads on every rank of another gang, W ranks of
batch b train exactly what one process of batch W·b trains, and a rank killed mid-segment costs
no iteration row: the gang is rebuilt and the segment rerun from the trial's last state.
"""

from __future__ import annotations

import json

import pytest
import ray
import torch

from pbtune.config import load_config, resolve
from pbtune.engines import Callback
from pbtune.engines.native.pool import WorkerPool
from tests.engines.test_fault_tolerance import journal
from tests.engines.test_held_ray import run
from tests.engines.test_native import read_rows

pytestmark = pytest.mark.ray

REGRESS = "tests/engines/gang_workload.py:Regress"


def gang_config(**overrides):
    sets = {"workload": REGRESS, "population": 2, "seed": 5, "resources.workers_per_trial": 2,
            "resources.cpus_per_worker": 0.5, "resources.reserve_cpus": 0,
            "stop.max_iterations": 4, "stop.metric_threshold": None,
            "pbt.perturbation_interval": 2, "pbt.quantile_fraction": 0.5}
    sets.update(overrides)
    return resolve(load_config(None, [f"{k}={json.dumps(v)}" for k, v in sets.items()], env={}))


def same(a, b, tol=0.0) -> bool:
    """Equal trees of tensors (to ``tol``), numbers and containers."""
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and (torch.equal(a, b) if not tol else
                                       torch.allclose(a.float(), b.float(), atol=tol, rtol=tol))
    if isinstance(a, dict):
        return set(a) == set(b) and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b, strict=True))
    return a == b


def segment(pool, slot, trial, target, **kwargs):
    result, _best, snapshot = pool.workers[slot].run.remote(
        trial, {"lr": 0.05, "momentum": 0.5}, 11, target, metric="val_loss", mode="min",
        **kwargs)
    out = ray.get(result)
    assert out["status"] == "ok", out["error"]
    return out, ray.get(snapshot)


def test_ranks_stay_equal_and_an_exploit_reaches_every_rank(ray_local):
    pool = WorkerPool(gang_config(options={"bn": True}))
    try:
        assert pool.size == 2 and all(len(pool.ranks(s)) == 2 for s in range(2))
        out, donor = segment(pool, 0, "a", 3)
        assert [r["iteration"] for r in out["rows"]] == [1, 2, 3]
        ranks = ray.get(pool.workers[0].replica_states.remote("a"))
        # Weights, momentum buffers and BatchNorm statistics: equal on both ranks, and what
        # rank 0 handed out as the trial's state.
        assert same(ranks[0]["model"], ranks[1]["model"])
        assert same(ranks[0]["optimizer"], ranks[1]["optimizer"])
        assert same(ranks[0]["model"], donor["model"]) and ranks[0]["iteration"] == 3
        # Exploit onto the other gang: both of its ranks load the donor's state.
        segment(pool, 1, "b", 1)
        segment(pool, 1, "b", 3, state=donor, include_rng=False)
        for state in ray.get(pool.workers[1].replica_states.remote("b")):
            assert same(state["model"], donor["model"])
            assert same(state["optimizer"]["state"], donor["optimizer"]["state"])
        # Both go on in step: one more iteration of each gives equal replicas again.
        segment(pool, 1, "b", 4)
        b0, b1 = ray.get(pool.workers[1].replica_states.remote("b"))
        assert same(b0["model"], b1["model"]) and not same(b0["model"], donor["model"])
    finally:
        pool.shutdown()


def test_two_ranks_of_batch_b_train_as_one_process_of_batch_2b(ray_local, tmp_path):
    """Same seeds, same data order: W=2 × 8 and W=1 × 16 give the same rows and states."""
    sets = {"stop.max_iterations": 3, "pbt.enabled": False, "checkpoint_interval": 3}
    _e1, _two, dir2 = run(gang_config(**sets, options={"batch_size": 8}), tmp_path / "two")
    _e2, _one, dir1 = run(gang_config(**sets, **{"resources.workers_per_trial": 1},
                                     options={"batch_size": 16}), tmp_path / "one")
    rows2, rows1 = read_rows(dir2), read_rows(dir1)
    assert sorted(rows2) == sorted(rows1) == ["t000", "t001"]
    for trial in rows1:
        for it in (1, 2, 3):
            for col in ("train_loss", "val_loss"):
                assert float(rows2[trial][it][col]) == pytest.approx(
                    float(rows1[trial][it][col]), rel=1e-5, abs=1e-6), (trial, it, col)
        assert rows2[trial][1]["worker_shape"] == "2x(cpu:0.5)"
    from pbtune.store.checkpoints import load_state

    for trial in ("t000", "t001"):
        (a,) = (dir2 / "checkpoints" / trial).glob("*3*")
        (b,) = (dir1 / "checkpoints" / trial).glob("*3*")
        assert same(load_state(a)["model"], load_state(b)["model"], tol=1e-5)


class KillRank(Callback):
    """Kills rank ``rank`` of the gang that reported iteration ``at`` (once): its process dies."""

    def __init__(self, at: int, rank: int) -> None:
        self.at, self.rank, self.engine, self.killed = at, rank, None, None

    def on_result(self, trial, row):
        if self.killed is None and row["iteration"] >= self.at:
            self.killed = row["worker"]
            ray.kill(self.engine.pool.ranks(row["worker"])[self.rank])


@pytest.mark.parametrize(("held", "rank"), [("never", 1), ("always", 1), ("never", 0)])
def test_a_rank_killed_mid_run_loses_no_row(ray_local, tmp_path, held, rank):
    cfg = gang_config(**{"stop.max_iterations": 6, "checkpoint_interval": 2,
                         "resources.state_on_worker": held, "options": {"sleep": 0.02}})
    killer = KillRank(at=2, rank=rank)
    _engine, summary, run_dir = run(cfg, tmp_path, killer)
    assert killer.killed is not None
    rows = read_rows(run_dir)  # asserts no iteration was recorded twice
    assert all(sorted(r) == list(range(1, 7)) for r in rows.values()) and len(rows) == 2
    lost = [e for e in journal(run_dir) if e["event"] == "worker_lost"]
    # The gang was rebuilt (and, with held states, trials whose states it held came back from
    # their checkpoints: those losses name no replacement); every loss counts as one failure.
    assert lost and any(e["replaced"] for e in lost) and not summary["errors"]
    assert sum(summary["failures"].values()) == len(lost)
    assert journal(run_dir)[-1]["event"] == "end"


def test_a_rank_that_raises_ends_its_gang_and_the_run_goes_on(ray_local, tmp_path):
    """Rank 1 raises in every trial's third iteration: each attempt ends its gang (rank 0
    does not wait in a collective forever), is retried on a rebuilt gang, and after
    max_failures the trial stays ERROR; the run ends with the first segment's rows kept."""
    cfg = gang_config(**{"stop.max_iterations": 4, "fault_tolerance.max_failures": 1,
                         "options": {"fail_rank": 1, "fail_at": 3}})
    _engine, summary, run_dir = run(cfg, tmp_path)
    rows = read_rows(run_dir)
    assert sorted(rows) == ["t000", "t001"] and all(sorted(r) == [1, 2] for r in rows.values())
    assert sorted(summary["errors"]) == ["t000", "t001"]
    lost = [e for e in journal(run_dir) if e["event"] == "worker_lost"]
    assert len(lost) == 4 and journal(run_dir)[-1]["event"] == "end"
