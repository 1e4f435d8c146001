"""The Ray-facing half: node discovery, placement on a real two-node cluster, connect errors."""

from __future__ import annotations

import pytest

from pbtune.cluster.plan import plan_cluster
from pbtune.errors import UserError


def test_node_info_keeps_custom_resources_and_finds_the_head():
    from pbtune.cluster.nodes import node_info

    raw = {"NodeID": "abc", "NodeManagerAddress": "10.0.0.3", "Alive": True,
           "Resources": {"CPU": 8.0, "GPU": 1.0, "memory": 1e9, "object_store_memory": 1e8,
                         "node:10.0.0.3": 1.0, "node:__internal_head__": 1.0,
                         "accelerator_type:A100": 1.0, "fast": 2.0}}
    info = node_info(raw)
    assert (info.ip, info.cpus, info.gpus, info.is_head, info.alive) == (
        "10.0.0.3", 8.0, 1.0, True, True)
    assert dict(info.custom) == {"fast": 2.0}


@pytest.mark.parametrize("address", ["127.0.0.1:1", "no-port-here"])
def test_bad_address_is_a_one_line_user_error(address):
    from pbtune.cluster.nodes import _probe

    with pytest.raises(UserError, match=f"cannot connect to Ray at {address}: .*ray start --head"):
        _probe(address)


@pytest.mark.ray
def test_two_node_cluster_discovery_and_pinned_placement():
    import ray
    from ray.cluster_utils import Cluster

    from pbtune.cluster import actor_options, cluster_nodes, connect, watch_nodes

    if ray.is_initialized():  # another test's local instance; this test needs its own cluster
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker_node = cluster.add_node(num_cpus=2, resources={"fast": 1})
        connect(cluster.address)
        cluster.wait_for_nodes()
        connect("unused:1")  # already initialised: a no-op, not an error

        nodes = cluster_nodes()
        assert [(n.is_head, n.cpus, dict(n.custom)) for n in nodes] == [
            (True, 1.0, {}), (False, 2.0, {"fast": 1.0})]
        assert nodes[1].node_id == worker_node.node_id

        plan = plan_cluster(nodes, cpus_per_trial=1, gpus_per_trial=0)
        assert [w.node_id for w in plan.workers] == [nodes[1].node_id] * 2 + [nodes[0].node_id]

        @ray.remote
        class Where:
            def node(self) -> str:
                return ray.get_runtime_context().get_node_id()

        actors = [Where.options(**actor_options(spec)).remote() for spec in plan.workers]
        landed = ray.get([a.node.remote() for a in actors], timeout=60)
        assert landed == [spec.node_id for spec in plan.workers]
        assert watch_nodes({n.node_id for n in nodes}) == ([], [])
        assert watch_nodes({nodes[0].node_id, "gone"}) == ([nodes[1]], ["gone"])
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.ray
def test_without_an_address_pbtune_never_joins_a_cluster_already_running(tmp_path):
    """Issue 15: a Ray cluster on the machine (another job's) must not be joined by accident;
    ``--address auto`` joins it explicitly. ``pbtune plan`` says which it did."""
    import os
    import re
    import subprocess
    import sys

    from tests.cluster.multinode import multinode
    from tests.conftest import REPO

    with multinode([{"num_cpus": 3, "resources": {"other_job": 1}}]) as (cluster, _nodes):
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["PYTHONPATH"] = REPO

        def plan(*extra: str) -> str:
            out = subprocess.run([sys.executable, "-m", "pbtune.cli", "plan", *extra],
                                 capture_output=True, text=True, env=env, timeout=180, cwd=REPO)
            assert out.returncode == 0, out.stderr[-2000:]
            if not extra:  # Ray's token notice means nothing to a private local run
                assert "Token authentication is enabled" not in out.stderr
            return out.stdout

        def total_cpus(text: str) -> int:
            return int(re.search(r"^\s*total\s+(\d+)", text, re.MULTILINE).group(1))

        private = plan()
        assert "cluster: started a private local Ray instance" in private
        assert total_cpus(private) == os.cpu_count()  # this machine, not the running cluster
        joined = plan("--address", cluster.address)
        assert f"cluster: joined the Ray cluster at {cluster.address}" in joined
        assert total_cpus(joined) == 3  # the running cluster: a 0-CPU head and a 3-CPU node


@pytest.mark.ray
def test_fractional_gpu_workers_get_the_gpus_the_plan_chose():
    """Issue 16: Ray alone gives four 0.25-GPU workers GPU 0 (the one with the least room left)
    while the plan spreads them [0, 1, 0, 1]; pinned to one bundle per GPU they see the planned
    GPU (Ray's logical GPUs: CUDA_VISIBLE_DEVICES is set as on a real GPU node)."""
    import ray

    from pbtune.engines.native.pool import WorkerPool
    from tests.cluster.multinode import multinode
    from tests.engines.test_native import toy_config

    with multinode([{"num_cpus": 4, "num_gpus": 2}]):
        cfg = toy_config(**{"resources.slots": 4, "resources.gpus_per_trial": 0.25,
                            "resources.cpu_workers": "none"})
        pool = WorkerPool(cfg)
        try:
            planned = [str(w.gpu_index) for w in pool.plan.workers]
            assert planned == ["0", "1", "0", "1"]
            infos = ray.get([w.info.remote() for w in pool.workers], timeout=60)
            assert [i["gpu_ids"] for i in infos] == [[g] for g in planned]
        finally:
            pool.shutdown()
