"""``pbtune plan``'s table and text from a pure plan (no Ray)."""

from __future__ import annotations

from pbtune.cluster.plan import plan_cluster
from pbtune.reporting.plan_table import plan_text, render_plan
from tests.cluster.test_plan import HETERO, LAPTOP


def test_plan_text_lists_every_node_totals_and_problems():
    text = plan_text(plan_cluster(HETERO, cpus_per_trial=1, gpus_per_trial=0.25,
                                  cpu_workers="none"))
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert ip in text
    assert "needs 0.25 GPUs per trial but has 0" in text
    assert "4 worker slots, 4 concurrent trials: 4 GPU workers of 0.25 GPUs + 1 CPU" in text
    assert "1/3 nodes used" in text
    # Issue 15's default: one population on GPU and CPU workers; the table says which is where.
    text = plan_text(plan_cluster(HETERO, cpus_per_trial=1, gpus_per_trial=0.25,
                                  cpus_per_cpu_trial=2))
    assert ("13 worker slots, 13 concurrent trials: 4 GPU workers of 0.25 GPUs + 1 CPU, "
            "9 CPU workers of 2 CPUs") in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip().startswith("10.")}
    assert "4 GPU" in rows["10.0.0.3"] and "7 CPU" in rows["10.0.0.1"] and "2 CPU" in rows[
        "10.0.0.2"]
    assert "3/3 nodes used" in text
    table = render_plan(plan_cluster(LAPTOP, cpus_per_trial=1, gpus_per_trial=0))
    assert table.row_count == 2 and [c.header for c in table.columns][-1] == "note"
    bad = plan_text(plan_cluster(LAPTOP, cpus_per_trial=4, gpus_per_trial=0))
    assert "problem: 127.0.0.1: has 2 CPUs < 4 CPUs per trial" in bad
    assert "PENDING forever" in bad


def test_plan_text_shows_gangs_and_what_binds():
    from pbtune.cluster.plan import NodeInfo

    guide = [NodeInfo(node_id="g", ip="10.0.1.1", cpus=20, gpus=8)]
    text = plan_text(plan_cluster(guide, cpus_per_trial=1, gpus_per_trial=1, workers_per_trial=2))
    assert "4 worker slots, 4 concurrent trials (gangs of 2 workers: 8 worker processes)" in text
    assert "4 gangs of 2 GPU workers of 1 GPU + 1 CPU" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("10.0.1.1"))
    assert row.split()[-1] == "GPU" and row.split()[7] == "8"  # bound by; worker processes
