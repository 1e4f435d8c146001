"""Unit tests of the pure capacity planner (no Ray)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pbtune.cluster.plan import NodeInfo, effective_reserve, plan_cluster
from pbtune.errors import UserError


def node(ip: str, cpus: float, gpus: float = 0, **kw) -> NodeInfo:
    return NodeInfo(node_id=f"id-{ip}", ip=ip, cpus=cpus, gpus=gpus, **kw)


def slots_by_ip(plan) -> dict[str, int]:
    return {p.ip: p.slots for p in plan.nodes}


LAPTOP = [node("127.0.0.1", 2, is_head=True)]
HETERO = [node("10.0.0.1", 16, is_head=True), node("10.0.0.2", 4), node("10.0.0.3", 8, 1)]


@pytest.mark.parametrize(
    ("node_cpus", "reserve", "expected"),
    [(2, 1, 0), (4, 1, 0), (4.5, 1, 0.5), (5, 1, 1), (5, 2, 1), (6, 2, 2), (16, 2, 2), (16, 0, 0)],
)
def test_reserve_ramps_in_above_four_cpus(node_cpus, reserve, expected):
    assert effective_reserve(node_cpus, reserve) == expected


def test_reserve_never_lowers_slots_as_cpus_grow():
    counts = [plan_cluster([node("a", c)], cpus_per_trial=1, gpus_per_trial=0,
                           reserve_cpus=2).total_slots for c in range(1, 20)]
    assert counts == sorted(counts)


@pytest.mark.parametrize(
    ("nodes", "cw", "gw", "kwargs", "expected"),
    [
        # The quickstart on a 2-core laptop runs 2 concurrent trials despite the default reserve.
        (LAPTOP, 1, 0, {}, {"127.0.0.1": 2}),
        (LAPTOP, 0.5, 0, {}, {"127.0.0.1": 4}),
        (LAPTOP, 3, 0, {}, {"127.0.0.1": 0}),
        # 16 CPUs - 1 reserve = 15 → 7 × 2; 4-CPU node keeps all 4 → 2; 8 - 1 = 7 → 3.
        (HETERO, 2, 0, {}, {"10.0.0.1": 7, "10.0.0.2": 2, "10.0.0.3": 3}),
        (HETERO, 1, 0, {"reserve_cpus": 0}, {"10.0.0.1": 16, "10.0.0.2": 4, "10.0.0.3": 8}),
        # GPU workers only: the GPU node hosts 4; CPUs (7 after reserve) do not bind at 0.25...
        (HETERO, 1, 0.25, {"cpu_workers": "none"}, {"10.0.0.1": 0, "10.0.0.2": 0, "10.0.0.3": 4}),
        # ...but they do at 0.1 GPU: 10 GPU shares, 7 CPUs.
        (HETERO, 1, 0.1, {"cpu_workers": "none"}, {"10.0.0.3": 7, "10.0.0.1": 0, "10.0.0.2": 0}),
        # Issue 15, the default: the GPU node's GPU workers plus CPU workers on the CPU nodes.
        (HETERO, 1, 0.25, {}, {"10.0.0.1": 15, "10.0.0.2": 4, "10.0.0.3": 4}),
        (HETERO, 1, 0.25, {"cpus_per_cpu_trial": 4}, {"10.0.0.1": 3, "10.0.0.2": 1, "10.0.0.3": 4}),
        # all: the GPU node's 3 CPUs left after its 4 GPU workers become CPU workers too.
        (HETERO, 1, 0.25, {"cpu_workers": "all"}, {"10.0.0.1": 15, "10.0.0.2": 4, "10.0.0.3": 7}),
        # resource_allocation caps listed nodes and leaves unlisted ones out.
        (HETERO, 1, 0, {"resource_allocation": {"10.0.0.1": {"CPU": 6}, "10.0.0.3": {"GPU": 0}}},
         {"10.0.0.1": 6, "10.0.0.2": 0, "10.0.0.3": 7}),
        # An allocation above what the node has changes nothing (reserve still applies).
        (HETERO, 1, 0, {"resource_allocation": {"10.0.0.1": {"CPU": 64}}},
         {"10.0.0.1": 15, "10.0.0.2": 0, "10.0.0.3": 0}),
        (HETERO, 1, 1, {"resource_allocation": {"10.0.0.3": {"GPU": 0}}, "cpu_workers": "none"},
         {"10.0.0.1": 0, "10.0.0.2": 0, "10.0.0.3": 0}),
        # A GPU node whose GPUs resource_allocation takes away counts as a CPU node.
        (HETERO, 1, 1, {"resource_allocation": {"10.0.0.3": {"GPU": 0}}},
         {"10.0.0.1": 0, "10.0.0.2": 0, "10.0.0.3": 7}),
        # slots fills GPU nodes first, then by CPUs: 10.0.0.3 (3) then 10.0.0.1 (2 of 7).
        (HETERO, 2, 0, {"slots": 5}, {"10.0.0.3": 3, "10.0.0.1": 2, "10.0.0.2": 0}),
        (HETERO, 2, 0, {"slots": 2}, {"10.0.0.3": 2, "10.0.0.1": 0, "10.0.0.2": 0}),
        (HETERO, 2, 0, {"slots": 50}, {"10.0.0.1": 7, "10.0.0.2": 2, "10.0.0.3": 3}),
        # Dead nodes get nothing.
        ([node("a", 8, alive=False), node("b", 2)], 1, 0, {}, {"a": 0, "b": 2}),
    ],
)
def test_slots_per_node(nodes, cw, gw, kwargs, expected):
    plan = plan_cluster(nodes, cpus_per_trial=cw, gpus_per_trial=gw, **kwargs)
    assert slots_by_ip(plan) == expected
    assert plan.total_slots == sum(expected.values()) == len(plan.workers)
    assert plan.trials_concurrent == plan.total_slots
    assert [w.index for w in plan.workers] == list(range(plan.total_slots))
    for p in plan.nodes:  # the two inequalities hold on every node
        mine = [w for w in plan.workers if w.node_id == p.node_id]
        assert len(mine) == p.slots and sum(w.kind == "gpu" for w in mine) == p.gpu_slots
        assert p.reserve + sum(w.num_cpus for w in mine) <= p.cpus + 1e-9
        assert sum(w.num_gpus for w in mine) <= p.gpus + 1e-9
        assert [w.kind for w in mine] == sorted(w.kind for w in mine)[::-1]  # GPU workers first


@pytest.mark.parametrize(
    ("gw", "per_gpu", "pooled"),
    [(0.5, 2, 4), (0.33, 3, 6), (0.25, 4, 8), (0.4, 2, 5), (0.3, 3, 6), (0.75, 1, 2), (1, 1, 2)],
)
def test_fractional_gpus_are_packed_per_physical_gpu(gw, per_gpu, pooled):
    plan = plan_cluster([node("g", 64, 2)], cpus_per_trial=1, gpus_per_trial=gw)
    assert plan.total_slots == 2 * per_gpu  # pooled counting (floor(2/g)) would give `pooled`
    assert int(2 / gw + 1e-9) == pooled
    gpus = [w.gpu_index for w in plan.workers]
    assert gpus[:2] == [0, 1]  # round-robin
    assert gpus.count(0) == gpus.count(1) == per_gpu
    assert all(w.num_gpus == gw and w.num_cpus == 1 for w in plan.workers)


def test_fractional_gpu_cap_and_multi_gpu_slots():
    # A 1.5-GPU cap gives one whole GPU (2 × 0.5) plus half of the second (1 × 0.5).
    plan = plan_cluster([node("g", 64, 2)], cpus_per_trial=1, gpus_per_trial=0.5,
                        resource_allocation={"g": {"GPU": 1.5}})
    assert [w.gpu_index for w in plan.workers] == [0, 1, 0]
    plan = plan_cluster([node("c", 8)], cpus_per_trial=1, gpus_per_trial=0)
    assert {w.gpu_index for w in plan.workers} == {None}


def test_workers_are_pinned_to_their_nodes_in_fill_order():
    plan = plan_cluster(HETERO, cpus_per_trial=2, gpus_per_trial=0)
    assert [w.ip for w in plan.workers] == ["10.0.0.3"] * 3 + ["10.0.0.1"] * 7 + ["10.0.0.2"] * 2
    assert all(w.node_id == f"id-{w.ip}" for w in plan.workers)


def test_impossible_request_says_why_per_node_and_what_to_change():
    nodes = [node("10.0.0.1", 16), node("10.0.0.2", 2), node("10.0.0.3", 6)]
    plan = plan_cluster(nodes, cpus_per_trial=6, gpus_per_trial=1, reserve_cpus=2,
                        cpu_workers="none")
    assert not plan.can_run()
    assert plan.problems[2] == ("10.0.0.2: has 2 CPUs < 6 CPUs per trial; needs 1 GPU per trial "
                                "but has 0 GPUs (lower cpus_per_trial or add nodes; "
                                "set cpu_workers: auto, gpus_per_trial: 0 or add GPU nodes)")
    # The default gives GPU-less nodes CPU workers: 10.0.0.1 fits one (16 - 2 reserve ≥ 12? no:
    # 14 // 6 = 2), the others are too small, and say so in CPU-worker terms.
    plan = plan_cluster(nodes, cpus_per_trial=6, gpus_per_trial=1, reserve_cpus=2,
                        cpus_per_cpu_trial=7)
    assert slots_by_ip(plan) == {"10.0.0.1": 2, "10.0.0.2": 0, "10.0.0.3": 0}
    assert {w.shape for w in plan.workers} == {"cpu:7"}
    assert [p.reason for p in plan.nodes if p.ip == "10.0.0.2"] == [
        "has 2 CPUs < 7 CPUs per CPU worker"]
    plan = plan_cluster(nodes, cpus_per_trial=6, gpus_per_trial=0, reserve_cpus=2, slots=1)
    assert plan.can_run() and plan.total_slots == 1
    plan = plan_cluster(nodes[1:], cpus_per_trial=6, gpus_per_trial=0, reserve_cpus=2)
    assert not plan.can_run()
    text = " | ".join(plan.problems)
    assert "10.0.0.3: reserve 2 CPUs + 6 CPUs per trial > 6 CPUs (lower cpus_per_trial" in text
    assert "10.0.0.2: has 2 CPUs < 6 CPUs per trial" in text
    plan = plan_cluster(HETERO, cpus_per_trial=1, gpus_per_trial=0,
                        resource_allocation={"10.0.0.2": {"CPU": 0.5}})
    assert plan.problems == (
        "10.0.0.3: not in resource_allocation (list its IP there to use it)",
        "10.0.0.1: not in resource_allocation (list its IP there to use it)",
        "10.0.0.2: resource_allocation gives 0.5 CPUs < 1 CPU per trial "
        "(raise its CPU or lower cpus_per_trial)",
    )
    assert "no alive nodes" in plan_cluster([], cpus_per_trial=1, gpus_per_trial=0).problems[0]


def test_allocation_problems_are_reported_by_name():
    plan = plan_cluster(HETERO, cpus_per_trial=1, gpus_per_trial=0,
                        resource_allocation={"10.0.0.9": {"CPU": 4}, "10.0.0.1": {"TPU": 1}})
    assert plan.can_run()  # the unknown IP is reported, the listed node still runs
    assert slots_by_ip(plan) == {"10.0.0.1": 15, "10.0.0.2": 0, "10.0.0.3": 0}
    assert any("10.0.0.9, which is not in the cluster" in p for p in plan.problems)
    assert any("'TPU'" in p for p in plan.problems)
    plan = plan_cluster(HETERO, cpus_per_trial=2, gpus_per_trial=0, slots=20)
    assert plan.problems == ("slots=20 asked but only 12 fit; running with 12 (add nodes or "
                             "lower cpus_per_trial/gpus_per_trial)",)


@pytest.mark.parametrize(
    ("cw", "gw", "kwargs", "match"),
    [(0, 0, {}, "needs resources"), (-1, 0, {}, "needs resources"),
     (1, 1.5, {}, "workers_per_trial: N for N GPUs"),
     (1, 2, {}, "use at most 1"),
     (1, 0, {"reserve_cpus": -1}, "negative"), (1, 0, {"slots": 0}, "at least 1")],
)
def test_malformed_requests_are_user_errors(cw, gw, kwargs, match):
    with pytest.raises(UserError, match=match):
        plan_cluster(HETERO, cpus_per_trial=cw, gpus_per_trial=gw, **kwargs)


def test_planning_does_not_import_ray():
    code = ("import sys, pbtune.cluster as c; c.plan_cluster([], cpus_per_trial=1, "
            "gpus_per_trial=0); assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- gangs: W workers per trial (issue 20) and the guide's Tnode rule ------------------------------
GUIDE = [node("10.0.1.1", 20, 8)]  # the original guide's node: Cnode 20, Gnode 8, Csys ≈ 1


def test_the_guides_worked_example_gives_tnode_4():
    """Csys + Tnode·W·Cw ≤ Cnode and Tnode·W·Gw ≤ Gnode: 1 + 4·2·2 = 17 ≤ 20, 4·2·1 = 8 ≤ 8."""
    plan = plan_cluster(GUIDE, cpus_per_trial=2, gpus_per_trial=1, reserve_cpus=1,
                        workers_per_trial=2)
    (p,) = plan.nodes
    # Either resource stops a fifth gang (1 + 5·2·2 = 21 > 20; 5·2·1 = 10 > 8): both bind.
    assert (p.slots, p.processes, p.binding) == (4, 8, "CPU and GPU")
    assert plan.trials_concurrent == 4 and all(w.ranks == 2 for w in plan.workers)
    assert [w.gpu_index for w in plan.workers] == [0, 2, 4, 6]  # each gang's first GPU
    assert plan.workers[0].shape == "2x(gpu:1/cpu:2)"


@pytest.mark.parametrize(
    ("cw", "gw", "w", "reserve", "tnode", "binding"),
    [
        (2, 1, 2, 1, 4, "CPU and GPU"),  # the guide's example
        (1, 1, 2, 1, 4, "GPU"),       # 1 + 4·2·1 = 9: the CPUs have room for 9 gangs
        (3, 1, 2, 1, 3, "CPU"),       # 1 + 3·2·3 = 19 ≤ 20; 4 gangs would need 25
        (2.375, 1, 2, 1, 4, "CPU and GPU"),  # 1 + 4·2·2.375 = 20 exactly
        (1, 0.5, 2, 1, 8, "GPU"),     # two workers share a GPU: 8 gangs of 2 half-GPUs
        (1, 1, 4, 1, 2, "GPU"),
        (2, 0, 2, 1, 4, "CPU"),       # CPU gangs: floor(19 / 4)
        (2, 0, 2, 0, 5, "CPU"),       # Csys configurable: floor(20 / 4)
    ],
)
def test_tnode_rule(cw, gw, w, reserve, tnode, binding):
    plan = plan_cluster(GUIDE, cpus_per_trial=cw, gpus_per_trial=gw, reserve_cpus=reserve,
                        workers_per_trial=w, cpu_workers="none" if gw else "auto")
    (p,) = plan.nodes
    assert (p.slots, p.binding) == (tnode, binding)
    assert reserve + p.slots * w * cw <= 20 and p.slots * w * gw <= 8  # the rule holds
    assert (reserve + (p.slots + 1) * w * cw > 20) or ((p.slots + 1) * w * gw > 8)  # and is tight


@pytest.mark.parametrize(
    ("nodes", "cw", "gw", "w", "words"),
    [
        # A gang of 2 one-GPU workers on nodes of one GPU each: packed, it fits nowhere.
        ([node("a", 8, 1), node("b", 8, 1)], 1, 1, 2, ["a trial needs 2", "workers_per_trial"]),
        # CPUs bind: 2 × 10 CPUs per gang on a 20-CPU node with its reserve.
        (GUIDE, 10, 1, 2, ["reserve 1 CPU + 20 CPUs per trial (2 workers of 10 CPUs) > 20 CPUs",
                           "lower cpus_per_trial or workers_per_trial or reserve_cpus"]),
        ([node("c", 16)], 1, 1, 2, ["needs 2 GPUs per trial but has 0 GPUs"]),
    ],
)
def test_a_gang_that_fits_nowhere_names_what_binds(nodes, cw, gw, w, words):
    plan = plan_cluster(nodes, cpus_per_trial=cw, gpus_per_trial=gw, workers_per_trial=w,
                        cpu_workers="none")
    assert not plan.can_run()
    text = " ".join(plan.problems)
    for word in words:
        assert word in text, text


def test_spread_gangs_span_nodes_that_pack_cannot_use():
    nodes = [node("a", 8, 1), node("b", 8, 1)]
    plan = plan_cluster(nodes, cpus_per_trial=1, gpus_per_trial=1, workers_per_trial=2,
                        cpu_workers="none", gang_placement="spread")
    (gang,) = plan.workers
    assert gang.rank_nodes == ("id-a", "id-b") and gang.ranks == 2
    assert [(p.slots, p.processes) for p in plan.nodes] == [(1, 1), (0, 1)]
    three = plan_cluster([*nodes, node("d", 8, 1)], cpus_per_trial=1, gpus_per_trial=1,
                         workers_per_trial=2, cpu_workers="none", gang_placement="spread")
    assert len(three.workers) == 1 and "complete no gang of 2" in (three.nodes[2].reason or "")
    lone = plan_cluster([node("a", 8, 1)], cpus_per_trial=1, gpus_per_trial=1,
                        workers_per_trial=2, cpu_workers="none", gang_placement="spread")
    assert not lone.can_run() and "a trial needs 2 workers" in " ".join(lone.problems)


def test_gangs_respect_slots_and_allocation():
    plan = plan_cluster(GUIDE, cpus_per_trial=2, gpus_per_trial=1, workers_per_trial=2,
                        slots=3, resource_allocation={"10.0.1.1": {"GPU": 4}})
    assert plan.total_slots == 2 and plan.nodes[0].processes == 4  # 4 GPUs: 2 gangs of 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_workers_per_trial_must_be_a_positive_integer(bad):
    with pytest.raises(UserError, match="workers_per_trial"):
        plan_cluster(GUIDE, cpus_per_trial=1, gpus_per_trial=0, workers_per_trial=bad)


def test_fused_members_count_as_trials_and_become_lanes_of_one_worker():
    """members_per_worker K: the plan counts K trials per worker (per node and in total); the
    pool dispatches to K lanes per worker, all sharing that worker's process and node."""
    from types import SimpleNamespace

    from pbtune.cluster.plan import plan_for
    from pbtune.cluster.specs import lanes
    from pbtune.reporting.plan_table import plan_text

    res = SimpleNamespace(cpus_per_trial=1, gpus_per_trial=0, reserve_cpus=0,
                          resource_allocation={}, slots=None, members_per_worker=4)
    plan = plan_for([node("a", 2), node("b", 1)], res)
    assert plan.total_slots == 3 and plan.trials_concurrent == 12
    assert [p.trials_concurrent for p in plan.nodes] == [8, 4]
    assert "12 concurrent trials (4 trials per worker, fused: members_per_worker)" in \
        plan_text(plan)
    specs = lanes(plan.workers, 4)
    assert [s.index for s in specs] == list(range(12))
    assert [s.worker_index for s in specs] == [0, 1, 2] * 4  # interleaved: trials spread
    assert {s.node_id for s in specs[2::3]} == {plan.workers[2].node_id}
    assert specs[0].shape == "fused4(cpu:1)"
    assert [s.index for s in lanes(plan.workers, 1, start=5)] == [5, 6, 7]
    assert all(s.worker_index == s.index for s in lanes(plan.workers, 1))
    from pbtune.cluster.specs import lanes_needed

    assert [lanes_needed(8, p, 2) for p in (8, 9, 16, 40, 1)] == [4, 5, 8, 8, 1]
