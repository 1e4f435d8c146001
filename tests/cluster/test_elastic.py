"""Heterogeneous placement, resource caps and elasticity on a real multi-node Ray cluster.

Each test starts its own ``ray.cluster_utils.Cluster`` on this machine (nodes with different CPU
counts), runs the native engine on the toy Counter and checks what happened from the run
directory: ``workers.json`` (where each worker landed), ``timeline.csv`` (which worker ran which
segment) and ``trials.csv`` (every trial's iterations).
"""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import pytest

from pbtune.engines import create_engine
from pbtune.results import ResultsWriter, create_run_dir
from tests.cluster.multinode import OBJECT_STORE, multinode
from tests.engines.test_native import read_rows, toy_config

pytestmark = pytest.mark.ray


def start(cfg, root: Path, watch_s: float = 0.5):
    run_dir = create_run_dir(root, cfg.name)
    engine = create_engine(cfg, [ResultsWriter(run_dir)])
    engine.watch_interval_s = watch_s
    engine.prepare()
    return engine, run_dir


def timeline(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "timeline.csv").open() as f:
        return list(csv.DictReader(f))


def assert_every_trial_finished(run_dir: Path, population: int, max_iter: int) -> None:
    rows = read_rows(run_dir)  # also asserts that no iteration was recorded twice
    assert len(rows) == population
    for trial_rows in rows.values():
        assert sorted(trial_rows) == list(range(1, max_iter + 1))  # contiguous, complete


def test_workers_land_on_planned_nodes_and_caps_hold(tmp_path):
    from pbtune.cluster import cluster_nodes, plan_cluster

    with multinode([{"num_cpus": 2}, {"num_cpus": 3, "resources": {"big": 1}}]) as (_, (a, b)):
        nodes = cluster_nodes()
        free = plan_cluster(nodes, cpus_per_trial=1, gpus_per_trial=0)
        per_node = {p.node_id: p.slots for p in free.nodes}
        assert (per_node[a.node_id], per_node[b.node_id]) == (2, 3)  # uncapped: every CPU

        # All nodes share this machine's IP, so one cap applies to each: 1 CPU per node.
        (ip,) = {n.ip for n in nodes}
        cfg = toy_config(**{"resources.slots": None, "population": 2, "stop.max_iterations": 2,
                            "resources.resource_allocation": {ip: {"CPU": 1}}})
        engine, run_dir = start(cfg, tmp_path)
        planned = [spec.node_id for spec in engine.pool.plan.workers]
        summary = engine.run()
    assert sorted(planned) == sorted([a.node_id, b.node_id])  # B gets 1 worker, not 3
    workers = json.loads((run_dir / "workers.json").read_text())
    assert [w["node_id"] for w in workers] == planned  # each worker on its planned node
    assert summary["slots"] == 2 and not summary["errors"]
    assert_every_trial_finished(run_dir, 2, 2)


def test_node_added_mid_run_gets_workers_that_run_segments(tmp_path):
    with multinode([{"num_cpus": 1}]) as (cluster, _):
        cfg = toy_config(**{"resources.slots": None, "population": 4, "stop.max_iterations": 8,
                            "options": {"sleep": 0.3}})  # 32 × 0.3 s = 9.6 s on one worker
        engine, run_dir = start(cfg, tmp_path)
        initial = engine.pool.size
        result: dict = {}
        # Ray starts nodes from the main thread only: the engine runs in a thread meanwhile.
        runner = threading.Thread(target=lambda: result.update(summary=engine.run()))
        runner.start()
        time.sleep(0.5)
        added = [cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)]
        runner.join(timeout=120)
        summary = result["summary"]
        grown = [w for w in engine.pool.describe() if w["index"] >= initial]
    assert initial == 1 and added
    assert [w["node_id"] for w in grown] == [added[0].node_id]  # planned like the others
    segments = timeline(run_dir)
    ran = {int(r["worker"]) for r in segments}
    assert {w["index"] for w in grown} <= ran  # the new worker ran segments
    assert all(r["node"] for r in segments)  # the new worker's segments name its node too
    listed = json.loads((run_dir / "workers.json").read_text())  # rewritten on membership
    assert [w["node_id"] for w in listed] == [w["node_id"] for w in engine.pool.describe()]
    assert len(listed) == 2 and all(w["alive"] and w.get("pid") for w in listed)
    assert summary["slots"] == 2 and not summary["errors"]
    assert_every_trial_finished(run_dir, 4, 8)


def test_node_removed_mid_run_loses_no_trial(tmp_path):
    with multinode([{"num_cpus": 1}, {"num_cpus": 1}]) as (cluster, (_, b)):
        cfg = toy_config(**{"resources.slots": None, "population": 4, "stop.max_iterations": 8,
                            "options": {"sleep": 0.2}, "fault_tolerance.max_failures": 10})
        engine, run_dir = start(cfg, tmp_path)
        on_b = [w["index"] for w in engine.pool.describe() if w["node_id"] == b.node_id]
        timer = threading.Timer(1.5, cluster.remove_node, args=(b,))
        timer.start()
        try:
            summary = engine.run()
        finally:
            timer.join()
        dead = set(engine.pool.dead)
    assert on_b and set(on_b) <= dead  # the removed node's worker was retired, not recreated
    listed = {w["index"]: w for w in json.loads((run_dir / "workers.json").read_text())}
    assert {i for i, w in listed.items() if not w["alive"]} == dead
    segments = timeline(run_dir)
    last_end_on_b = max(float(r["end_s"]) for r in segments if int(r["worker"]) in on_b)
    assert any(float(r["end_s"]) > last_end_on_b for r in segments)  # the run went on without b
    assert not summary["errors"]
    assert_every_trial_finished(run_dir, 4, 8)
