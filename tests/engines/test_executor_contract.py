"""The same scenarios through the simulated and the Ray executor give the same run.

Why: the simulated executor is how the coordinator is tested without Ray; that is only worth
something if a Ray run makes the very same decisions. Both executors run segments through
``run_segment`` and are driven by the same loop, so ``pbt_global.txt`` and every trial's
per-iteration score and config must be identical whatever the schedule was.
"""

from __future__ import annotations

import json

import pytest

from pbtune.cli import main
from pbtune.engines import Callback, create_engine
from pbtune.results import ResultsWriter, create_run_dir
from tests.engines.test_fault_tolerance import run_with_recovery
from tests.engines.test_native import toy_config
from tests.engines.test_simulated import decisions, scores, simulate

pytestmark = pytest.mark.ray

SCENARIOS = {
    "affinity": {"population": 5, "stop.max_iterations": 6, "options": {"noise": 0.1},
                 "pbt.quantile_fraction": 0.5},
    "fifo-errors": {"population": 4, "stop.max_iterations": 6, "scheduling": "fifo",
                    "options": {"noise": 0.1, "nan_above": 0.9}, "checkpoint_interval": 2},
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_simulated_and_ray_runs_decide_alike(ray_local, tmp_path, name):
    cfg = toy_config(**SCENARIOS[name])
    _summary, sim_dir, _ex = simulate(cfg, tmp_path / "sim", (1.0, 2.0))
    ray_dir = create_run_dir(tmp_path / "ray", cfg.name)
    create_engine(cfg, [ResultsWriter(ray_dir)]).run()
    assert decisions(sim_dir) and decisions(ray_dir) == decisions(sim_dir)
    assert scores(ray_dir) == scores(sim_dir)


class InterruptOn(Callback):
    """Ctrl-C at the ``k``-th call of ``hook`` (on the real engine, where the order of events
    depends on timing, a position is named by what just happened rather than by its index)."""

    def __init__(self, hook: str, k: int) -> None:
        self.hook, self.k, self.seen = hook, k, 0
        setattr(self, hook, self._tick)

    def _tick(self, *args):
        self.seen += 1
        if self.seen == self.k:
            raise KeyboardInterrupt


@pytest.mark.parametrize("hook,k", [("on_exploit", 1), ("on_exploit", 3), ("on_segment", 5),
                                    ("on_trial_end", 1)])
def test_ray_run_interrupted_then_resumed_equals_the_uninterrupted_run(ray_local, tmp_path,
                                                                       hook, k):
    """A sample of the interruption points the simulated property test covers exhaustively."""
    sets = {"population": 5, "stop.max_iterations": 6, "options": {"noise": 0.1},
            "pbt.quantile_fraction": 0.5, "checkpoint_interval": 2}
    cfg = toy_config(**sets)
    reference, ref_dir, _ex = simulate(cfg, tmp_path / "ref", (1.0, 2.0))
    _engine, summary, run_dir = run_with_recovery(cfg, tmp_path / "run", InterruptOn(hook, k))
    assert summary["stop_reason"] == "interrupted"
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert decisions(run_dir) == decisions(ref_dir)
    assert scores(run_dir) == scores(ref_dir)
    assert json.loads((run_dir / "summary.json").read_text())["best"] == reference["best"]
