"""The live status table rendered from engine events (no Ray: events are fed by hand)."""

from __future__ import annotations

import io
import time

from rich.console import Console

from pbtune.engines.base import Trial
from pbtune.pbt.policy import Decision
from pbtune.reporting.live import LiveStatus
from pbtune.reporting.status import RunState, format_duration


def feed(view: LiveStatus) -> list[Trial]:
    trials = [Trial(f"t00{i}", {"lr": 0.1 * (i + 1)}, seed=i) for i in range(3)]
    workers = [{"index": 0, "node_id": "n", "ip": "10.0.0.1", "host": "a", "pid": 1},
               {"index": 1, "node_id": "m", "ip": "10.0.0.2", "host": "b", "pid": 2}]
    view.on_start({"workers": workers, "trials": trials, "slots": 2,
                   "start_time": time.time() - 10})
    for it in (1, 2):
        for n, trial in enumerate(trials):
            trial.iteration, trial.status = it, "PAUSED"
            view.on_result(trial, {"iteration": it, "score": it * trial.config["lr"],
                                   "config": dict(trial.config), "node": workers[n % 2]["ip"],
                                   "time_this_iter_s": 0.5, "node_cpu_percent": 40.0 + n,
                                   "node_gpu_percent": 75.0 if n == 1 else None})
    view.on_exploit(Decision("t000", "t002", 2, 2, {"lr": 0.3}, {"lr": 0.36}))
    trials[0].config, trials[1].status = {"lr": 0.36}, "RUNNING"
    return trials


def test_live_table_shows_nodes_progress_and_trials():
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False, color_system=None)
    view = LiveStatus(RunState("score", "max", 3, 4, threshold=0.9), title="pbtune demo",
                      console=console)
    feed(view)
    console.print(view.render())
    view.close()
    text = out.getvalue()
    assert "exploit: t000 <- t002 at iteration 2; explore lr=0.36" in text
    assert "node 10.0.0.1  1 worker " in text and "CPU  42%" in text  # latest row from that node
    assert "node 10.0.0.2" in text and "GPU  75%" in text
    assert "6/12 iterations" in text and " 50%" in text  # budget = 3 trials × 4 iterations
    assert "best score" in text and "0.6000 (t002 @ 2)" in text and "stops at 0.9" in text
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0].startswith("t00"):
            rows[cells[0]] = cells
    assert rows["t000"][:2] == ["t000", "PAUSED"]
    assert set(rows) == {"t000", "t001", "t002"}
    assert rows["t001"][1] == "RUNNING" and rows["t002"][1] == "PAUSED"
    # trial, status, node, lr, score, iter, time, last exploit
    assert rows["t000"][2:] == ["10.0.0.1", "0.36", "0.2", "2", "1s", "<- t002 @ 2"]
    assert rows["t001"][2:] == ["10.0.0.2", "0.2", "0.4", "2", "1s", "-"]


def test_progress_uses_the_nearer_of_iteration_and_time_budgets():
    state = RunState("score", "max", 2, 10, time_budget_s=100.0)
    state.t0 = time.time() - 50  # half the time budget gone
    state.done = 5  # a quarter of the iterations, at 0.1 it/s → 150 s left by iterations
    fraction, eta = state.progress()
    assert abs(fraction - 0.5) < 1e-3 and abs(eta - 50) < 1
    assert format_duration(3725) == "1h02m" and format_duration(65) == "1m05s"
    assert format_duration(None) == "-"


def test_membership_changes_update_the_node_lines():
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False, color_system=None)
    view = LiveStatus(RunState("score", "max", 3, 4), title="t", console=console)
    feed(view)
    view.on_workers([
        {"index": 0, "node_id": "n", "ip": "10.0.0.1", "alive": True},
        {"index": 1, "node_id": "m", "ip": "10.0.0.2", "alive": False},  # its node left
        {"index": 2, "node_id": "k", "ip": "10.0.0.3", "alive": True},  # a node joined
        {"index": 3, "node_id": "k", "ip": "10.0.0.3", "alive": True}])
    console.print(view.render())
    view.close()
    text = out.getvalue()
    assert "node 10.0.0.3  2 workers" in text and "node 10.0.0.1  1 worker " in text
    assert "node 10.0.0.2" not in text
    assert view.state.worker_ip[1] == "10.0.0.2"  # its past rows still name its node


def test_fused_workers_show_their_members():
    """members_per_worker: each member is a slot (a lane) of one worker process; the node line
    counts processes and members."""
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False, color_system=None)
    view = LiveStatus(RunState("score", "max", 3, 4), title="t", console=console)
    feed(view)
    view.on_workers([{"index": i, "node_id": "n", "ip": "10.0.0.1", "pid": 100 + i // 4,
                      "alive": True} for i in range(8)])
    console.print(view.render())
    view.close()
    assert "node 10.0.0.1  2 workers, 8 members" in out.getvalue()
    assert "10.0.0.1 (2 workers, 8 members)" in view.state.node_text()
