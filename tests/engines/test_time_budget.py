"""``stop.time_budget_s`` on the Ray engine holds against a hung ``train`` (issue 14 item 5)."""

from __future__ import annotations

import json
import time

import pytest

from tests.engines.test_fault_tolerance import journal, run_with_recovery
from tests.engines.test_native import toy_config

pytestmark = pytest.mark.ray


def test_a_hung_train_cannot_hold_the_run_past_budget_and_grace(ray_local, tmp_path):
    hold = tmp_path / "never-removed"
    hold.touch()  # iteration 2 of every trial waits for ever
    cfg = toy_config(**{"stop.time_budget_s": 3, "stop.grace_s": 2, "stop.max_iterations": 6,
                        "options": {"hold_file": str(hold), "hold_at": 2}})
    start = time.monotonic()
    _engine, summary, run_dir = run_with_recovery(cfg, tmp_path / "run")
    assert time.monotonic() - start < 60  # budget 3 s + grace 2 s + a poll, plus start-up
    assert summary["stop_reason"] == "time_budget" and summary["wall_s"] < 3 + 2 + 5
    abandoned = [e for e in journal(run_dir) if e["event"] == "abandoned"]
    assert len(abandoned) == 2 and {e["iteration"] for e in abandoned} == {0}  # redo 0→2
    assert json.loads((run_dir / "summary.json").read_text())["stop_reason"] == "time_budget"
