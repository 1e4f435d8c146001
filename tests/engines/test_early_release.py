"""Early release at perturbation boundaries (``pbt.early_release``) on a real local Ray instance.

Three trials on two workers: when the first two reach a boundary the third is still to run it,
so without early release one worker idles until the third arrives. With it, the better of the
first two (it cannot be in the bottom quantile whatever the third scores) goes on at once. The
decisions and every result must be the same either way, and Ctrl-C must leave a consistent cut.
"""

from __future__ import annotations

import json

import pytest

from pbtune.cli import main
from pbtune.engines import Callback, create_engine
from pbtune.results import ResultsWriter, create_run_dir
from tests.engines.test_fault_tolerance import journal, run_with_recovery
from tests.engines.test_native import read_rows, run, toy_config

pytestmark = pytest.mark.ray

SETS = {"population": 3, "stop.max_iterations": 6, "options": {"sleep": 0.15}}


class Segments(Callback):
    """Records (trial, iteration reached, start s, end s) of every segment."""

    def __init__(self) -> None:
        self.segments: list[tuple[str, int, float, float]] = []

    def on_segment(self, trial, worker, start_s, end_s):
        self.segments.append((trial.trial_id, trial.iteration, start_s, end_s))


def went_on_early(segments: list[tuple[str, int, float, float]], boundary: int) -> list[str]:
    """Trials whose segment past ``boundary`` started before another trial had reached it."""
    last_arrival = max(end for _t, it, _s, end in segments if it == boundary)
    return sorted({t for t, it, start, _e in segments
                   if boundary < it <= boundary + 2 and start < last_arrival})


def scores(run_dir) -> dict[tuple[str, int], str]:
    return {(t, it): row["score"] for t, rows in read_rows(run_dir).items()
            for it, row in rows.items()}


def test_release_changes_the_order_not_the_results(ray_local, tmp_path):
    strict, released = Segments(), Segments()
    dirs = {}
    for name, flag, recorder in (("strict", False, strict), ("released", True, released)):
        cfg = toy_config(**{**SETS, "pbt.early_release": flag})
        dirs[name] = create_run_dir(tmp_path / name, cfg.name)
        create_engine(cfg, [ResultsWriter(dirs[name]), recorder]).run()
    assert went_on_early(strict.segments, 2) == [] and went_on_early(strict.segments, 4) == []
    early = went_on_early(released.segments, 2)
    assert len(early) == 1  # the better of the first two; the third decides nothing for it
    decisions = (dirs["strict"] / "pbt_global.txt").read_text()
    assert decisions and decisions == (dirs["released"] / "pbt_global.txt").read_text()
    assert early[0] not in {json.loads(d)[0] for d in decisions.splitlines()}  # never a target
    assert scores(dirs["strict"]) == scores(dirs["released"])


class InterruptAtLastArrival(Callback):
    """Ctrl-C when the third trial reaches iteration 2: a released trial is then past it."""

    def __init__(self) -> None:
        self.arrived: set[str] = set()

    def on_result(self, trial, row):
        if row["iteration"] == 2 and len(self.arrived) < 3:
            self.arrived.add(trial.trial_id)
            if len(self.arrived) == 3:
                raise KeyboardInterrupt


def test_interrupt_rewinds_released_trials_to_a_consistent_cut(ray_local, tmp_path):
    reference, ref_dir = run(toy_config(**SETS), tmp_path / "reference")
    recorder = Segments()
    _engine, summary, run_dir = run_with_recovery(
        toy_config(**{**SETS, "checkpoint_interval": 2}), tmp_path / "run",
        InterruptAtLastArrival(), recorder)
    assert summary["stop_reason"] == "interrupted"
    assert any(it > 2 for _t, it, _s, _e in recorder.segments)  # one had gone on past 2
    cut = [e for e in journal(run_dir) if e["event"] == "cut"][-1]
    assert cut["last_barrier"] == 0  # boundary 2's decisions were not made...
    assert {r["iteration"] for r in cut["trials"].values()} <= {0, 2}  # ...so nobody is past it
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    rows = read_rows(run_dir)  # fails on an iteration recorded twice
    assert sorted(rows) == ["t000", "t001", "t002"]
    assert all(sorted(r) == list(range(1, 7)) for r in rows.values())
    assert (run_dir / "pbt_global.txt").read_text() == (ref_dir / "pbt_global.txt").read_text()
    assert scores(run_dir) == scores(ref_dir)
    assert json.loads((run_dir / "summary.json").read_text())["best"] == reference["best"]


def test_exploit_targets_keep_their_own_rng_on_any_worker(ray_local, tmp_path):
    """Which worker runs an exploited trial must not change its results: a worker that does not
    hold it live takes the trial's own RNG from its state at the boundary (not a fresh one)."""
    sets = {"population": 6, "stop.max_iterations": 8, "options": {"sleep": 0.02, "noise": 0.1},
            "pbt.quantile_fraction": 0.5}
    dirs = {}
    for name, extra in (("affinity", {"pbt.early_release": False}),
                        ("fifo", {"scheduling": "fifo"})):
        _summary, dirs[name] = run(toy_config(**sets, **extra), tmp_path / name)
    moved = {(t, it) for t, rows in read_rows(dirs["fifo"]).items() for it, r in rows.items()
             if read_rows(dirs["affinity"])[t][it]["worker"] != r["worker"]}
    assert moved  # the schedules differ
    decisions = (dirs["fifo"] / "pbt_global.txt").read_text()
    assert decisions == (dirs["affinity"] / "pbt_global.txt").read_text() != ""
    assert scores(dirs["fifo"]) == scores(dirs["affinity"])

