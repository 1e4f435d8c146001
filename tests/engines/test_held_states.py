"""The large-state path on the simulated executor: states stay on their workers.

The simulated executor in ``hold_states`` mode keeps every trial's state live on its worker, as
the Ray workers do for large states: no snapshot after a segment, a donor's state copied only
when an exploit shares it, a released trial's boundary state pinned, checkpoints copied when
asked for, and a state asked for that its worker no longer has reported as lost (and counted).
Since segments run at once when dispatched, any state the coordinator failed to share or pin
before its trial moved on is caught. The properties: a held run decides and reports exactly
what the snapshot run does, over schedules; interrupted after any event and resumed it equals
the uninterrupted run; a lost worker's trials continue from their checkpoints.
"""

from __future__ import annotations

import pytest

from pbtune.api.resuming import load_run, restore_run
from pbtune.config import dump_yaml
from pbtune.engines.core.events import Held
from pbtune.engines.native.engine import NativeEngine
from pbtune.engines.simulated import SimulatedExecutor
from pbtune.results import ResultsWriter, create_run_dir, write_metadata
from pbtune.store.journal import read_journal
from tests.engines.test_native import read_rows, toy_config
from tests.engines.test_simulated import SETS, Count, InterruptAfter, KillAt, decisions, scores


def simulate(cfg, root, speeds, hold, callbacks=()):
    run_dir = create_run_dir(root, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    ex = SimulatedExecutor(cfg, speeds, hold_states=hold)
    engine = NativeEngine(cfg, [ResultsWriter(run_dir), *callbacks], executor=ex)
    engine.enable_recovery(run_dir, {"config_sha256": None})
    return engine.run(), run_dir, ex, engine


SCHEDULES = [((1.0, 1.0), {}), ((1.0, 3.0), {}), ((0.5, 1.0, 4.0), {}),
             ((1.0, 5.0, 2.0), {"scheduling": "fifo"}),
             ((1.0, 5.0, 2.0), {"scheduling": "speed-aware"}),
             ((3.0, 1.0), {"pbt.early_release": False}),
             ((1.0, 1.0), {"population": 3, "pbt.quantile_fraction": 0.25}),
             ((1.0, 4.0), {"checkpoint_interval": 4, "stop.max_iterations": 9})]


@pytest.mark.parametrize("speeds,extra", SCHEDULES)
def test_held_states_decide_and_report_what_snapshots_do(tmp_path, speeds, extra):
    cfg = toy_config(**{**SETS, **extra})
    ref, ref_dir, _ex, _e = simulate(cfg, tmp_path / "snap", speeds, hold=False)
    got, run_dir, ex, engine = simulate(cfg, tmp_path / "held", speeds, hold=True)
    assert ex.states_gone == 0  # every state asked for was still there (shared or pinned)
    assert decisions(run_dir) and decisions(run_dir) == decisions(ref_dir)
    assert scores(run_dir) == scores(ref_dir)
    assert got["best"] == ref["best"] and got["exploits"] == ref["exploits"]
    held = [t.snapshot for t in engine.coordinator.trials.values()]
    assert held and all(isinstance(h, Held) and h.shared is None for h in held)
    # Copies to another worker: one per exploit at most (a donor shared by two targets is
    # copied once) and one per move; never one per segment. Writes: one per checkpoint.
    last, moves = {}, 0
    for trial, worker, *_rest in ex.segments:
        moves += last.get(trial, worker) != worker
        last[trial] = worker
    assert ex.exports <= got["exploits"] + moves
    checkpoints = [e for e in read_journal(run_dir)[1] if e["event"] == "checkpoint"]
    assert ex.writes == len(checkpoints) > 0


def test_early_release_pins_the_boundary_state_a_donor_needs(tmp_path):
    """A released trial runs on past a boundary not decided yet; if it is then a donor there,
    its target must get its state *at the boundary*, from the pin its segment took."""
    sets = {**SETS, "population": 3, "pbt.quantile_fraction": 0.25}
    cfg = toy_config(**sets)
    _r, ref_dir, _ex, _e = simulate(cfg, tmp_path / "snap", (1.0, 1.0), hold=False)
    _g, run_dir, ex, _e = simulate(cfg, tmp_path / "held", (1.0, 1.0), hold=True)
    released = {t for t, _w, to, start, _e in ex.segments if to > 2 and start < max(
        end for _t, _w, to2, _s, end in ex.segments if to2 == 2)}
    donors_at_2 = {d[1] for d in decisions(run_dir) if d[2] == 2}
    assert released & donors_at_2, "the schedule must release a donor early"
    assert ex.states_gone == 0 and scores(run_dir) == scores(ref_dir)


def test_without_share_a_donor_that_trains_on_loses_its_state(tmp_path, monkeypatch):
    """The test's own check: with ShareState ignored, the executor sees the gone states."""
    from pbtune.engines.core import exploit

    monkeypatch.setattr(exploit, "ShareState", lambda state: exploit.Journal({"event": "x"}))
    cfg = toy_config(**SETS)
    _g, _d, ex, _e = simulate(cfg, tmp_path, (1.0, 1.0), hold=True)
    assert ex.states_gone > 0


@pytest.mark.parametrize("speeds", [(1.0, 1.0), (1.0, 2.5)])
def test_held_run_interrupted_after_any_event_resumes_to_the_same_run(tmp_path, speeds):
    cfg = toy_config(**SETS)
    counter = Count()
    reference, ref_dir, _ex, _e = simulate(cfg, tmp_path / "ref", speeds, False, [counter])
    for n in range(1, counter.seen, 2):
        run_dir = create_run_dir(tmp_path / f"n{n}", cfg.name)
        write_metadata(run_dir, dump_yaml(cfg))
        engine = NativeEngine(cfg, [ResultsWriter(run_dir), InterruptAfter(n)],
                              executor=SimulatedExecutor(cfg, speeds, hold_states=True))
        engine.enable_recovery(run_dir, {"config_sha256": None})
        assert engine.run()["stop_reason"] == "interrupted", n
        cfg2, _header, events = load_run(run_dir, [], None)
        ex = SimulatedExecutor(cfg2, speeds, hold_states=True)
        resumed = NativeEngine(cfg2, [], executor=ex)
        restore_run(resumed, run_dir, cfg2, events)
        resumed.callbacks.append(ResultsWriter(run_dir, append=True))
        summary = resumed.run()
        assert summary["stop_reason"] == "max_iterations" and ex.states_gone == 0, n
        assert decisions(run_dir) == decisions(ref_dir), n
        assert scores(run_dir) == scores(ref_dir), n
        assert summary["best"] == reference["best"], n


class DrainThenKill(KillAt):
    """Loses a worker once every checkpoint asked for so far is on disk (so the coordinator
    knows them before it hears of the loss: the test does not race the writer thread)."""

    def __init__(self, engine, *args) -> None:
        super().__init__(*args)
        self.engine = engine

    def on_result(self, trial, row):
        if not self.done and trial.trial_id == self.trial and row["iteration"] == self.iteration:
            self.engine.persistence.drain()
        super().on_result(trial, row)


@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("at", [3, 5])
def test_a_lost_worker_s_held_states_come_back_from_their_checkpoints(tmp_path, replace, at):
    """Its live states are gone with it; each of its trials rolls back to its latest checkpoint
    (every 2 iterations here, with the RNG), re-runs without reporting a row twice, and the run
    ends as the run without a loss (the toy is deterministic given its state)."""
    cfg = toy_config(**SETS)
    ref, ref_dir, _ex, _e = simulate(cfg, tmp_path / "ref", (1.0, 2.0, 3.0), hold=False)
    run_dir = create_run_dir(tmp_path / "lost", cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    ex = SimulatedExecutor(cfg, (1.0, 2.0, 3.0), hold_states=True)
    engine = NativeEngine(cfg, [ResultsWriter(run_dir)], executor=ex)
    killer = DrainThenKill(engine, ex, "t001", at, replace)
    engine.callbacks.append(killer)
    engine.enable_recovery(run_dir, {"config_sha256": None})
    summary = engine.run()
    assert killer.done and sum(summary["failures"].values()) >= 1
    rows = read_rows(run_dir)
    assert all(sorted(r) == list(range(1, 9)) for r in rows.values())  # each row once
    assert scores(run_dir) == scores(ref_dir) and decisions(run_dir) == decisions(ref_dir)
    assert summary["best"] == ref["best"]
