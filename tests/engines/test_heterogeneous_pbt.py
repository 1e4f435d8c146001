"""PBT on a two-speed cluster: trials on a slow node are not exploited for being behind.

Setup: a real 2-node Ray cluster, one node labelled ``slow`` whose worker trains 3× slower through
the per-node ``slowdown: {"slow": 3.0}`` option. The trial on the slow node has the *better*
learning rate (0.6 vs 0.5 per iteration of the toy Counter), so at equal progress it is the best
and PBT has no reason to replace it. The engine ranks at the boundary iteration every live trial
has reached, so it never exploits it. A policy ranking by the last reported score (what a
progress-unaware scheduler does when the first trial reaches a boundary) would: at that moment the
slow trial is behind, so it ranks last.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import pytest

from pbtune.engines import create_engine
from pbtune.pbt.policy import quantile_split
from pbtune.results import ResultsWriter, create_run_dir
from tests.cluster.multinode import multinode
from tests.engines.test_native import read_rows, toy_config

pytestmark = pytest.mark.ray

BETTER, WORSE = 0.6, 0.5  # lr on the slow / fast node
MAX_ITER, INTERVAL = 6, 2


def run_two_speed(cfg, root: Path, slow_node: str):
    """Run with lr BETTER for the trials the slow node's workers take (worker i takes t00i:
    affinity, unmeasured workers in index order); returns (rows, slow trial ids, run_dir)."""
    run_dir = create_run_dir(root, cfg.name)
    engine = create_engine(cfg, [ResultsWriter(run_dir)])
    engine.prepare()
    deadline = time.monotonic() + 60  # the run would start with the first worker: the premise
    while engine.pool.starting and time.monotonic() < deadline:  # needs both from the start
        engine.pool.adopt()
        time.sleep(0.05)
    slow_workers = {w["index"] for w in engine.pool.describe() if w["node_id"] == slow_node}
    slow = {f"t{i:03d}" for i in slow_workers}
    for tid, trial in engine.trials.items():
        trial.config["lr"] = BETTER if tid in slow else WORSE
    engine.run()
    rows = read_rows(run_dir)
    if cfg.pbt.enabled:  # the premise: each trial stayed on its worker (without PBT a fast
        # worker done with its trial takes a slow one's later iterations: work conservation)
        for tid, trial_rows in rows.items():
            assert {int(r["worker"]) for r in trial_rows.values()} == {int(tid[1:])}
    return rows, slow, run_dir


def exploited_by_last_reported(rows, k: int) -> set[tuple[int, str]]:
    """(boundary, trial) pairs a progress-unaware policy would replace: when the first trial
    reports boundary b, rank every trial by its last reported score (none yet: -inf)."""
    reports = sorted((float(r["timestamp"]), it, tid, float(r["score"]))
                     for tid, trial_rows in rows.items() for it, r in trial_rows.items())
    last = dict.fromkeys(rows, -math.inf)
    decided, out = set(), set()
    for _, it, tid, score in reports:
        last[tid] = score
        if it % INTERVAL == 0 and it < MAX_ITER and it not in decided:
            decided.add(it)
            out |= {(it, t) for t in sorted(last, key=lambda t: (last[t], t))[:k]}
    return out


def test_slow_node_trials_are_exploited_only_as_their_scores_warrant(tmp_path):
    with multinode([{"num_cpus": 1}, {"num_cpus": 1, "resources": {"slow": 1}}]) as (_, (_f, s)):
        base = {"resources.slots": None, "population": 2, "scheduling": "affinity",
                "stop.max_iterations": MAX_ITER, "pbt.perturbation_interval": INTERVAL,
                "pbt.quantile_fraction": 0.25, "pbt.resample_probability": 0.0,
                "options": {"sleep": 0.05, "slowdown": {"slow": 3.0}},
                "param_space": {"lr": WORSE}, "pbt.hyperparam_mutations": {"lr": [WORSE]}}
        rows, slow, run_dir = run_two_speed(toy_config(**base), tmp_path / "pbt", s.node_id)
        free, _, _ = run_two_speed(toy_config(**base, **{"pbt.enabled": False}),
                                   tmp_path / "free", s.node_id)
    assert len(slow) == 1

    # The per-node slowdown took effect: iterations on the slow node take ~3× as long.
    def median_iter_s(group: bool) -> float:
        return statistics.median(float(r["time_this_iter_s"]) for t, tr in rows.items()
                                 if (t in slow) == group for r in tr.values())
    assert median_iter_s(True) > 2.5 * median_iter_s(False)

    # The engine: every decision ranks trials at the same iteration, and its targets are exactly
    # the bottom quantile of the scores there; the slow node's (better) trials are never among them.
    decisions = [json.loads(x) for x in (run_dir / "pbt_global.txt").read_text().splitlines()]
    assert {d[2] for d in decisions} == {2, 4} and all(d[2] == d[3] for d in decisions)
    for b in (2, 4):
        at_b = {t: float(tr[b]["score"]) for t, tr in rows.items()}
        warranted = quantile_split(at_b, 0.25)[0]
        assert [d[0] for d in decisions if d[2] == b] == warranted
    engine_slow = [d for d in decisions if d[0] in slow]
    assert engine_slow == []

    # Ranking by last reported score on the same two-speed cluster replaces a slow-node trial at
    # every boundary, although it is among the best at equal progress: exploited for being behind.
    naive = exploited_by_last_reported(free, k=1)
    assert len(naive) == 2 and all(t in slow for _, t in naive)  # boundaries 2 and 4
    for b, t in naive:
        at_b = {u: float(tr[b]["score"]) for u, tr in free.items()}
        assert at_b[t] == max(at_b.values())


def test_one_population_spans_gpu_and_cpu_worker_shapes(tmp_path):
    """Issue 15: a node with a (Ray logical) GPU gets a GPU worker, a CPU-only node a CPU worker,
    and one population trains on both. trials.csv names each row's worker shape and precision;
    the GPU worker's trial is the best, so every exploit copies its state into the trial on the
    CPU worker, exactly: the toy's score continues from the donor's.

    Two trials on two workers, so every exploit crosses shapes by construction: each worker
    keeps its own trial (affinity), at every boundary both wait for the decision. With three
    trials on three workers a trial could move at a boundary and an exploit stay on CPU
    workers: an "at least one exploit crosses" check failed once in a local run of the suite."""
    nodes = [{"num_cpus": 1, "num_gpus": 1}, {"num_cpus": 1}]
    with multinode(nodes) as (_, (gpu_node, *_cpu)):
        cfg = toy_config(**{
            "resources.slots": None, "resources.gpus_per_trial": 1,
            "resources.precision": {"gpu": "bf16"}, "population": 2, "scheduling": "affinity",
            "stop.max_iterations": 8, "pbt.perturbation_interval": INTERVAL,
            "pbt.quantile_fraction": 0.25, "pbt.resample_probability": 0.0,
            "options": {"sleep": 0.05}, "param_space": {"lr": WORSE},
            "pbt.hyperparam_mutations": {"lr": [WORSE]}})
        run_dir = create_run_dir(tmp_path, cfg.name)
        engine = create_engine(cfg, [ResultsWriter(run_dir)])
        engine.prepare()
        deadline = time.monotonic() + 60
        while engine.pool.starting and time.monotonic() < deadline:
            engine.pool.adopt()
            time.sleep(0.05)
        workers = engine.pool.describe()
        assert [w["shape"] for w in workers] == ["gpu:1/cpu:1", "cpu:1"]
        assert workers[0]["node_id"] == gpu_node.node_id and workers[0]["device"] == "cuda"
        assert [w["precision"] for w in workers] == ["bf16", "fp32"]
        engine.trials["t000"].config["lr"] = BETTER  # worker 0 (the GPU worker) takes t000
        engine.run()
    rows = read_rows(run_dir)
    shape_of = {"0": ("gpu:1/cpu:1", "bf16"), "1": ("cpu:1", "fp32")}
    for trial_rows in rows.values():
        for r in trial_rows.values():
            assert (r["worker_shape"], r["precision"]) == shape_of[r["worker"]]
    assert {r["worker_shape"] for tr in rows.values() for r in tr.values()} == {
        "gpu:1/cpu:1", "cpu:1"}
    decisions = [json.loads(x) for x in (run_dir / "pbt_global.txt").read_text().splitlines()]
    assert len(decisions) == 3 and all(d[1] == "t000" for d in decisions)  # t000 is the best
    for target, donor, it, donor_it, *_ in decisions:
        after = rows[target][it + 1]
        assert float(after["score"]) == pytest.approx(  # the donor's exact state went on
            float(rows[donor][donor_it]["score"]) + WORSE)
        # ...from the GPU worker to the CPU worker
        assert (rows[donor][donor_it]["worker_shape"], after["worker_shape"]) == (
            "gpu:1/cpu:1", "cpu:1")


def test_a_gpu_worker_without_cuda_is_a_one_line_error(tmp_path):
    """A node that offers Ray a GPU where torch sees none (a CPU-only torch build): the run stops
    at start-up naming the cause and the fix, instead of each trial failing on ``.to("cuda")``."""
    from pbtune.errors import UserError

    with multinode([{"num_cpus": 1, "num_gpus": 1}]):
        cfg = toy_config(**{"workload": "digits-cnn", "param_space": {}, "population": 2,
                            "resources.slots": None, "resources.gpus_per_trial": 1,
                            "resources.cpu_workers": "none", "stop.max_iterations": 2,
                            "pbt.perturbation_interval": 1})
        engine = create_engine(cfg, [])
        with pytest.raises(UserError, match=r"no worker could start: .*torch sees no CUDA device"):
            engine.prepare()
