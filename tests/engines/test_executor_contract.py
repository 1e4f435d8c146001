"""The same scenarios through the simulated and the Ray executor give the same run.

Why: the simulated executor is how the coordinator is tested without Ray; that is only worth
something if a Ray run makes the very same decisions. Both executors run segments through
``run_segment`` and are driven by the same loop, so ``pbt_global.txt`` and every trial's
per-iteration score and config must be identical whatever the schedule was.
"""

from __future__ import annotations

import pytest

from pbtune.engines import create_engine
from pbtune.results import ResultsWriter, create_run_dir
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
