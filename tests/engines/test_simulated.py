"""Whole PBT runs on the simulated executor: the coordinator's decisions without Ray.

Each run takes milliseconds, so the properties that matter are checked over many schedules:
ranking at equal progress on heterogeneous speeds, early release changing the order and never
the results, speed-aware dispatch, worker loss, and a run interrupted after *any* result and
resumed ending exactly like the uninterrupted run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pbtune.api.resuming import load_run, restore_run
from pbtune.config import dump_yaml
from pbtune.engines import Callback
from pbtune.engines.native.engine import NativeEngine
from pbtune.engines.simulated import SimulatedExecutor
from pbtune.pbt.policy import quantile_split
from pbtune.results import ResultsWriter, create_run_dir, write_metadata
from tests.engines.test_native import read_rows, toy_config

SETS = {"population": 6, "stop.max_iterations": 8, "options": {"noise": 0.1},
        "pbt.quantile_fraction": 0.5, "checkpoint_interval": 2}


def simulate(cfg, root: Path, speeds=(1.0, 1.0), callbacks=(), recovery=True):
    """One run on the simulated executor, with result files; ``(summary, run_dir, executor)``."""
    run_dir = create_run_dir(root, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    ex = SimulatedExecutor(cfg, speeds)
    engine = NativeEngine(cfg, [ResultsWriter(run_dir), *callbacks], executor=ex)
    if recovery:
        engine.enable_recovery(run_dir, {"config_sha256": None})
    return engine.run(), run_dir, ex


def scores(run_dir) -> dict[tuple[str, int], tuple[str, str]]:
    return {(t, it): (row["score"], row["config/lr"]) for t, rows in read_rows(run_dir).items()
            for it, row in rows.items()}


def decisions(run_dir) -> list[list]:
    path = run_dir / "pbt_global.txt"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


NO_RAY = """
import sys
from pbtune.config import load_config, resolve
from pbtune.engines.native.engine import NativeEngine
from pbtune.engines.simulated import SimulatedExecutor
cfg = resolve(load_config(None, ["workload=pbt-toy", "population=4", "stop.max_iterations=4",
                                  "pbt.perturbation_interval=2"], env={}))
summary = NativeEngine(cfg, [], executor=SimulatedExecutor(cfg, [1.0, 2.0])).run()
assert summary["exploits"] > 0, summary
assert "ray" not in sys.modules, "the simulated engine imported Ray"
print("ok")
"""


def test_a_simulated_run_imports_no_ray():
    import subprocess

    out = subprocess.run([sys.executable, "-c", NO_RAY], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 3.0), (0.5, 1.0, 4.0), (2.0,)])
def test_decisions_rank_at_equal_progress_on_any_speeds(tmp_path, speeds):
    _summary, run_dir, _ex = simulate(toy_config(**SETS), tmp_path, speeds)
    rows = read_rows(run_dir)
    found = decisions(run_dir)
    assert {d[2] for d in found} == {2, 4, 6} and all(d[2] == d[3] for d in found)
    for b in (2, 4, 6):
        at_b = {t: float(tr[b]["score"]) for t, tr in rows.items()}
        assert [d[0] for d in found if d[2] == b] == sorted(quantile_split(at_b, 0.5)[0])
        for d in found:  # the target continued from the donor's exact state at b
            if d[2] == b:
                assert float(rows[d[0]][b + 1]["score"]) >= float(rows[d[1]][b]["score"])


def test_results_do_not_depend_on_speeds_or_dispatch(tmp_path):
    reference = None
    for i, (speeds, extra) in enumerate([((1.0, 1.0), {}), ((1.0, 5.0), {}),
                                         ((1.0, 5.0, 2.0), {"scheduling": "fifo"}),
                                         ((1.0, 5.0, 2.0), {"scheduling": "speed-aware"}),
                                         ((3.0, 1.0), {"pbt.early_release": False})]):
        _s, run_dir, _ex = simulate(toy_config(**SETS, **extra), tmp_path / str(i), speeds)
        got = (decisions(run_dir), scores(run_dir))
        assert got[0]
        reference = reference or got
        assert got == reference


def went_on_early(ex: SimulatedExecutor, boundary: int) -> list[str]:
    last_arrival = max(end for _t, _w, to, _s, end in ex.segments if to == boundary)
    return sorted({t for t, _w, to, start, _e in ex.segments
                   if to > boundary and start < last_arrival})


def test_early_release_changes_the_order_not_the_results(tmp_path):
    sets = {**SETS, "population": 3, "pbt.quantile_fraction": 0.25}
    runs = {}
    for flag in (False, True):
        cfg = toy_config(**sets, **{"pbt.early_release": flag})
        _s, run_dir, ex = simulate(cfg, tmp_path / str(flag), (1.0, 1.0))
        runs[flag] = (decisions(run_dir), scores(run_dir), went_on_early(ex, 2))
    assert runs[False][2] == [] and len(runs[True][2]) == 1
    assert runs[False][:2] == runs[True][:2]
    assert runs[True][2][0] not in {d[0] for d in runs[True][0] if d[2] == 2}


def test_speed_aware_finishes_no_later_than_affinity_on_mixed_speeds(tmp_path):
    walls = {}
    for name in ("affinity", "speed-aware"):
        cfg = toy_config(**{**SETS, "population": 5, "scheduling": name})
        summary, _d, _ex = simulate(cfg, tmp_path / name, (1.0, 1.0, 6.0))
        walls[name] = summary["wall_s"]
    assert walls["speed-aware"] <= walls["affinity"]
    assert walls["speed-aware"] < walls["affinity"] * 0.9  # a straggler no longer sets the pace


class KillAt(Callback):
    """Loses the worker that ran ``trial``'s iteration ``iteration`` right after its report."""

    def __init__(self, ex, trial: str, iteration: int, replace: bool) -> None:
        self.ex, self.trial, self.iteration, self.replace = ex, trial, iteration, replace
        self.done = False

    def on_result(self, trial, row):
        if not self.done and trial.trial_id == self.trial and row["iteration"] == self.iteration:
            self.done = True
            busy = [w for w in self.ex.inflight]
            self.ex.kill(busy[0] if busy else row["worker"], replace=self.replace)


@pytest.mark.parametrize("replace", [True, False])
def test_worker_loss_costs_no_row_and_no_decision(tmp_path, replace):
    cfg = toy_config(**SETS)
    _s, ref_dir, _ex = simulate(cfg, tmp_path / "ref", (1.0, 2.0, 3.0))
    run_dir = create_run_dir(tmp_path / "lost", cfg.name)
    ex = SimulatedExecutor(cfg, (1.0, 2.0, 3.0))
    killer = KillAt(ex, "t001", 3, replace)
    summary = NativeEngine(cfg, [ResultsWriter(run_dir), killer], executor=ex).run()
    assert killer.done and sum(summary["failures"].values()) == 1
    assert decisions(run_dir) == decisions(ref_dir) and scores(run_dir) == scores(ref_dir)


class InterruptAfter(Callback):
    """Ctrl-C after the ``n``-th event the run reports: a row, an exploit, a segment's end or a
    trial's end (every point at which the coordinator's state changes)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def _tick(self) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt

    def on_result(self, trial, row):
        self._tick()

    def on_exploit(self, decision):
        self._tick()

    def on_segment(self, trial, worker, start_s, end_s):
        self._tick()

    def on_trial_end(self, trial):
        self._tick()


class Count(InterruptAfter):
    def __init__(self) -> None:
        super().__init__(0)


def resume_simulated(run_dir: Path, speeds) -> dict:
    cfg, _header, events = load_run(run_dir, [], None)
    engine = NativeEngine(cfg, [], executor=SimulatedExecutor(cfg, speeds))
    restore_run(engine, run_dir, cfg, events)
    engine.callbacks.append(ResultsWriter(run_dir, append=True))
    return engine.run()


@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 2.5)])
def test_interrupt_after_any_result_then_resume_equals_the_uninterrupted_run(tmp_path, speeds):
    """Every interruption point, resumed, gives the uninterrupted run's decisions and rows —
    also between an exploit and its target's next segment (issue 14 item 1), with noise on, so
    the target's own data-order RNG must survive too."""
    cfg = toy_config(**SETS)
    counter = Count()
    reference, ref_dir, _ex = simulate(cfg, tmp_path / "ref", speeds, [counter])
    assert reference["exploits"] > 0
    for n in range(1, counter.seen):
        run_dir = create_run_dir(tmp_path / f"n{n}", cfg.name)
        write_metadata(run_dir, dump_yaml(cfg))
        engine = NativeEngine(cfg, [ResultsWriter(run_dir), InterruptAfter(n)],
                              executor=SimulatedExecutor(cfg, speeds))
        engine.enable_recovery(run_dir, {"config_sha256": None})
        assert engine.run()["stop_reason"] == "interrupted", n
        summary = resume_simulated(run_dir, speeds)
        assert summary["stop_reason"] == "max_iterations", n
        assert decisions(run_dir) == decisions(ref_dir), n
        assert scores(run_dir) == scores(ref_dir), n
        assert summary["best"] == reference["best"], n


def test_resume_of_a_run_directory_in_use_is_refused_and_changes_nothing(tmp_path, capsys):
    from pbtune.cli import main
    from tests.store.test_lock import holder

    cfg = toy_config(**SETS)
    run_dir = create_run_dir(tmp_path, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    engine = NativeEngine(cfg, [ResultsWriter(run_dir), InterruptAfter(20)],
                          executor=SimulatedExecutor(cfg, (1.0, 1.0)))
    engine.enable_recovery(run_dir, {"config_sha256": None})
    assert engine.run()["stop_reason"] == "interrupted"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    proc = holder(run_dir)  # a resume (or the run itself) still going on
    try:
        assert main(["resume", str(run_dir), "--quiet"]) == 2
    finally:
        proc.kill()
        proc.wait()
    assert "is in use by pbtune pid" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != ".lock"} == \
        {k: v for k, v in before.items() if k != ".lock"}


class NewestCutVerifies(Callback):
    """After every segment: once the writer has caught up, the newest cut in the journal must
    reference only files that exist and verify (the resume point a SIGKILL now would use)."""

    def __init__(self) -> None:
        self.engine, self.checked = None, 0

    def on_segment(self, trial, worker, start_s, end_s):
        from pbtune.store.journal import read_journal

        p = self.engine.persistence
        p.drain()
        cuts = [e for e in read_journal(p.run_dir)[1] if e["event"] == "cut"]
        if not cuts:
            return
        for rec in cuts[-1]["trials"].values():
            for key in ("checkpoint", "rng_checkpoint"):
                if rec.get(key) and rec["status"] not in ("TERMINATED", "ERROR"):
                    p.store.verify(rec[key])  # raises CheckpointCorrupt (a ValueError)
        self.checked += 1


@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 4.0), (0.5, 1.0, 6.0)])
def test_pruning_never_deletes_a_file_the_newest_cut_needs(tmp_path, speeds):
    """Issue 14 item 2: with early release, a fast trial's checkpoints for later cuts were
    pruned before those cuts were written."""
    cfg = toy_config(**{"population": 6, "pbt.perturbation_interval": 3,
                        "checkpoint_interval": 2, "stop.max_iterations": 7,
                        "options": {"noise": 0.1}, "fault_tolerance.keep_checkpoints": 1})
    run_dir = create_run_dir(tmp_path, cfg.name)
    check = NewestCutVerifies()
    engine = NativeEngine(cfg, [ResultsWriter(run_dir), check],
                          executor=SimulatedExecutor(cfg, speeds))
    check.engine = engine
    engine.enable_recovery(run_dir, {"config_sha256": None})
    engine.run()
    assert check.checked > 5


def test_a_segment_past_the_time_budget_and_its_grace_is_abandoned(tmp_path):
    """Issue 14 item 5: the budget holds even when an iteration takes far longer than it."""
    cfg = toy_config(**{**SETS, "stop.time_budget_s": 5, "stop.grace_s": 2})
    summary, run_dir, ex = simulate(cfg, tmp_path, (100.0, 1.0))  # worker 0: 100 s/iteration
    assert summary["stop_reason"] == "time_budget"
    assert summary["wall_s"] <= 5 + 2 + ex.tick_s
    from pbtune.store.journal import read_journal

    events = read_journal(run_dir)[1]
    abandoned = [e for e in events if e["event"] == "abandoned"]
    assert [e["worker"] for e in abandoned] == [0]
    final = [e for e in events if e["event"] == "cut"][-1]
    assert final["trials"][abandoned[0]["trial"]]["iteration"] == abandoned[0]["iteration"]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_pb2_interrupted_after_an_exploit_resumes_to_the_same_run(tmp_path, k):
    """PB2's memory (its data rows and baselines) is part of the cut's policy state."""
    cfg = toy_config(**{**SETS, "pbt.policy": "pb2"})
    reference, ref_dir, _ex = simulate(cfg, tmp_path / "ref", (1.0, 2.0))
    assert reference["exploits"] >= 4
    run_dir = create_run_dir(tmp_path / "run", cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))

    class AtExploit(Callback):
        seen = 0

        def on_exploit(self, decision):
            self.seen += 1
            if self.seen == k:
                raise KeyboardInterrupt

    engine = NativeEngine(cfg, [ResultsWriter(run_dir), AtExploit()],
                          executor=SimulatedExecutor(cfg, (1.0, 2.0)))
    engine.enable_recovery(run_dir, {"config_sha256": None})
    assert engine.run()["stop_reason"] == "interrupted"
    summary = resume_simulated(run_dir, (1.0, 2.0))
    assert decisions(run_dir) == decisions(ref_dir)
    assert scores(run_dir) == scores(ref_dir)
    assert summary["best"] == reference["best"]


DIE = """
import os, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from pbtune.engines import Callback
from pbtune.engines.native.engine import NativeEngine
from pbtune.engines.simulated import SimulatedExecutor
from pbtune.config import load_config, resolve
from pbtune.results import ResultsWriter

class Die(Callback):
    seen = 0
    def _tick(self, *args):
        self.seen += 1
        if self.seen == {n}:
            os._exit(137)  # as SIGKILL: nothing runs on exit, queued writes are lost
    on_result = on_exploit = on_segment = on_trial_end = _tick

run_dir = Path({run_dir!r})
cfg = resolve(load_config(str(run_dir / "config.yaml"), env={{}}))
engine = NativeEngine(cfg, [ResultsWriter(run_dir), Die()],
                      executor=SimulatedExecutor(cfg, {speeds!r}))
engine.enable_recovery(run_dir, {{"config_sha256": None}})
engine.run()
"""


@pytest.mark.parametrize("n", [3, 12, 13, 20, 31, 44, 57, 70])
def test_killed_after_an_event_then_resumed_equals_the_uninterrupted_run(tmp_path, n):
    """The driver process dies (os._exit, as SIGKILL) right after the n-th event; resume goes
    on from the newest cut that reached the disk and ends like the uninterrupted run."""
    import subprocess

    from tests.conftest import REPO

    speeds = (1.0, 2.5)
    cfg = toy_config(**SETS)
    counter = Count()
    reference, ref_dir, _ex = simulate(cfg, tmp_path / "ref", speeds, [counter])
    assert n < counter.seen
    run_dir = create_run_dir(tmp_path / "run", cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    code = DIE.format(repo=str(REPO), n=n, run_dir=str(run_dir), speeds=speeds)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    summary = resume_simulated(run_dir, speeds)
    assert summary["stop_reason"] == "max_iterations"
    assert decisions(run_dir) == decisions(ref_dir)
    assert scores(run_dir) == scores(ref_dir)
    assert summary["best"] == reference["best"]
