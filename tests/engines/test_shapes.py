"""Worker shapes (issue 15) on the simulated executor and in the dispatchers: one population on
GPU and CPU workers, rows that say where and how each iteration ran, and speed-aware dispatch
that learns each shape's speed. Deterministic and Ray-free; the Ray run on a multi-node cluster
with a logical GPU is tests/engines/test_heterogeneous_pbt.py."""

from __future__ import annotations

import pytest

from pbtune.config import dump_yaml
from pbtune.engines.core.events import WorkerInfo, WorkersChanged
from pbtune.engines.core.workers import WorkerTable
from pbtune.engines.dispatch.speed_aware import earliest_finish
from pbtune.engines.native.engine import NativeEngine
from pbtune.engines.simulated import SimulatedExecutor
from pbtune.results import ResultsWriter, create_run_dir, write_metadata
from tests.engines.test_native import read_rows, toy_config
from tests.engines.test_simulated import decisions, scores

GPU, CPU = "gpu:0.5/cpu:1", "cpu:1"
SHAPES = [GPU, CPU, CPU, CPU]
SPEEDS = [0.1, 1.0, 1.0, 1.0]  # virtual s per iteration: the GPU worker is 10x faster


def simulate(cfg, root, shapes=SHAPES, speeds=SPEEDS):
    run_dir = create_run_dir(root, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    ex = SimulatedExecutor(cfg, speeds, shapes=shapes)
    summary = NativeEngine(cfg, [ResultsWriter(run_dir)], executor=ex).run()
    return summary, run_dir, ex


def config(**sets):
    return toy_config(**{"population": 8, "stop.max_iterations": 8, "options": {"noise": 0.1},
                         "pbt.quantile_fraction": 0.5, "resources.slots": None,
                         "resources.gpus_per_trial": 0.5,
                         "resources.precision": {"gpu": "bf16"}, **sets})


@pytest.mark.parametrize("scheduling", ["affinity", "speed-aware"])
def test_rows_name_shape_and_precision_and_exploits_cross_shapes(tmp_path, scheduling):
    summary, run_dir, ex = simulate(config(scheduling=scheduling), tmp_path)
    rows = read_rows(run_dir)
    assert summary["iterations"] == 8 * 8
    shape_of = {str(i): s for i, s in enumerate(SHAPES)}
    for trial_rows in rows.values():
        for r in trial_rows.values():
            assert r["worker_shape"] == shape_of[r["worker"]]
            assert r["precision"] == ("bf16" if r["worker_shape"] == GPU else "fp32")
    assert {w for _, w, *_ in ex.segments} == {0, 1, 2, 3}  # no CPU worker sat idle
    crossed = [d for d in decisions(run_dir) if rows[d[1]][d[3]]["worker_shape"]
               != rows[d[0]][d[2] + 1]["worker_shape"]]
    assert crossed  # a donor's state went from one shape to the other


def test_shapes_change_where_trials_run_not_the_results(tmp_path):
    """States are device-independent: the same seed gives the same decisions and scores whether
    the population runs on mixed shapes or on identical CPU workers."""
    _, mixed, _ = simulate(config(), tmp_path / "mixed")
    _, plain, _ = simulate(config(), tmp_path / "plain", shapes=[CPU] * 4, speeds=[1.0] * 4)
    assert decisions(mixed) == decisions(plain)
    assert scores(mixed) == scores(plain)


def test_gpu_worker_takes_the_most_promising_trial():
    class T:
        def __init__(self, tid, score, worker=None):
            self.trial_id, self.iteration, self.worker = tid, 2, worker
            self.scores = {2: score}

    # 12 two-iteration segments: the GPU worker (10 it/s) would need 2.4 s for all of them, a
    # CPU worker (1 it/s) 2 s for one: the plan gives the GPU worker the most promising trial
    # and the CPU workers one each. (With only a few segments left, the GPU worker would finish
    # them all before a CPU worker finished one, and the CPU workers rightly decline.)
    trials = [T(f"t{i:02d}", (i * 7 % 12) / 12, i % 3) for i in range(12)]
    plan = dict(earliest_finish([1, 0, 2], trials, {}, speeds={0: 10.0, 1: 1.0, 2: 1.0},
                                mode="max", length=lambda t: 2))
    best = max(trials, key=lambda t: t.scores[2])
    assert plan[0] is best  # the most promising trial on the fast (GPU) worker
    assert set(plan) == {0, 1, 2}  # and the CPU workers are not idle


def test_an_unmeasured_worker_is_planned_at_its_shapes_speed():
    table = WorkerTable()
    table.update(WorkersChanged(tuple(WorkerInfo(i, f"n{i}", shape=s)
                                      for i, s in enumerate([GPU, CPU, GPU, CPU, "cpu:4"]))))
    table.record_speed(0, 10, 1.0)  # 10 it/s
    table.record_speed(1, 1, 1.0)
    est = table.estimated_speeds()
    assert est[2] == pytest.approx(10.0) and est[3] == pytest.approx(1.0)
    assert 4 not in est  # a shape never measured: counted as fast until measured
    assert table.idle()[:2] == [4, 0]  # unmeasured first, then the measured fastest


def test_parked_trials_come_back_exactly():
    """A GPU worker keeps ``resources.gpu_live_trials`` trials on its device; the others are
    parked on the host and continue, state and RNG, exactly as if they had stayed."""
    from pbtune.engines.segment import Parked, park, run_segment
    from tests.engines.toy_workload import Counter

    def segments(budget):
        live, rows = {}, []
        for round_ in range(3):
            for tid in ("a", "b", "c"):
                result, _, _ = run_segment(  # noise: each step draws from the trial's own RNG
                    live, tid, lambda tid=tid: Counter({"lr": 0.3}, seed=ord(tid),
                                                       options={"noise": 0.1}),
                    {"lr": 0.3}, 2 * (round_ + 1), metric="score", mode="max")
                rows += [(tid, r["iteration"], r["score"]) for r in result["rows"]]
                if budget is not None:
                    park(live, budget)
                    assert sum(not isinstance(w, Parked) for w in live.values()) <= budget
        return rows, live

    unbounded, _ = segments(None)
    parked, live = segments(1)
    assert parked == unbounded and len({score for *_, score in parked}) > 3
    assert [tid for tid, w in live.items() if not isinstance(w, Parked)] == ["c"]  # last run


TORCH_FREE_GPU_WORKER = """
import sys
from pbtune.engines.native.worker import Worker
w = Worker("tests/engines/toy_workload.py:Counter", {}, {"offset": [0.0]}, 0, "cuda", 1,
           shape="gpu:1/cpu:1", precision="auto", gpu_share=0.5, live_trials=1)
for tid in ("a", "b", "c"):  # more trials than live_trials: parking would run
    result, _, _ = w.run(tid, {"lr": 0.1}, 0, 2, metric="score", mode="max")
    assert result["status"] == "ok", result
assert "torch" not in sys.modules, "a GPU worker of a torch-free workload imported torch"
print(w.precision)
"""


def test_a_gpu_worker_of_a_torch_free_workload_never_imports_torch():
    """Resolving ``precision: auto`` and parking trials must not import torch for a workload
    that does not use it: on the mixed-shape benchmark that import (seconds) delayed the fast
    worker and the makespan went from 1.03 to 1.17-1.64 of the bound."""
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-c", TORCH_FREE_GPU_WORKER], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "bf16"  # auto on a GPU worker: the workload's bf16 (a label)
