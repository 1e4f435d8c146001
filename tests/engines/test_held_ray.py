"""The large-state path on real Ray workers (``resources.state_on_worker: always``).

What only Ray shows: the worker's copies and writes run on their own threads while other trials
train, a trial's next segment waits for a copy of it queued before, the donor's copy goes from
worker to worker, checkpoints and best-result candidates are written by the workers, and a
killed worker's held trials come back from their checkpoints.
"""

from __future__ import annotations

import pytest
import ray

from pbtune.config import dump_yaml
from pbtune.engines import create_engine
from pbtune.results import ResultsWriter, create_run_dir, write_metadata
from pbtune.store.checkpoints import CheckpointStore, load_state
from tests.engines.test_fault_tolerance import KillWorker, journal
from tests.engines.test_native import read_rows, toy_config

pytestmark = pytest.mark.ray

SETS = {"population": 4, "stop.max_iterations": 6, "checkpoint_interval": 2,
        "options": {"sleep": 0.02, "noise": 0.1}, "pbt.quantile_fraction": 0.5}


def run(cfg, root, *callbacks):
    run_dir = create_run_dir(root, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg))
    engine = create_engine(cfg, [ResultsWriter(run_dir), *callbacks])
    for cb in callbacks:
        cb.engine = engine
    engine.enable_recovery(run_dir)
    return engine, engine.run(), run_dir


def table(run_dir):
    return {(t, i): (r["score"], r["config/lr"]) for t, rows in read_rows(run_dir).items()
            for i, r in rows.items()}


def test_held_states_give_the_snapshot_run_and_write_their_own_files(ray_local, tmp_path):
    _e, ref, ref_dir = run(toy_config(**SETS, **{"resources.state_on_worker": "never"}),
                           tmp_path / "snap")
    engine, got, run_dir = run(toy_config(**SETS, **{"resources.state_on_worker": "always"}),
                               tmp_path / "held")
    assert got["exploits"] > 0 and got["exploits"] == ref["exploits"]
    # Donor copies: at most one per exploit (targets of one donor share it), some in flight.
    assert "held_states" not in ref
    assert 1 <= got["held_states"]["exports"] <= got["exploits"]
    assert 1 <= got["held_states"]["exports_in_flight_peak"] <= got["held_states"]["exports"]
    assert (run_dir / "pbt_global.txt").read_text() == (ref_dir / "pbt_global.txt").read_text()
    assert table(run_dir) == table(ref_dir) and got["best"] == ref["best"]
    # No trial state ever came back to the driver: every handle it kept names a worker.
    assert all(type(t.snapshot).__name__ == "Held" for t in engine.coordinator.trials.values())
    # Checkpoints the workers wrote verify against the journal; the final cut names them.
    events = journal(run_dir)
    store = CheckpointStore(run_dir)
    ckpts = [e for e in events if e["event"] == "checkpoint"]
    assert {e["iteration"] for e in ckpts} >= {2, 4, 6}
    for e in ckpts:
        if (run_dir / e["path"]).is_file():
            store.verify(e)
    # best.pt: the best result's state (the workers wrote candidates, the writer kept one).
    best = [e for e in events if e["event"] == "best"][-1]
    assert (best["trial_id"], best["iteration"]) == (got["best"]["trial_id"],
                                                     got["best"]["iteration"])
    state = load_state(run_dir / "best_model.pt")
    assert state["iteration"] == got["best"]["iteration"]
    assert not list((run_dir / "checkpoints").glob(".best_candidate_*"))  # none left behind
    assert not list((run_dir / "checkpoints").rglob("*.tmp"))


def test_a_killed_worker_s_held_trials_come_back_from_their_checkpoints(ray_local, tmp_path):
    cfg = toy_config(**{**SETS, "stop.max_iterations": 8, "resources.state_on_worker": "always",
                        "options": {"sleep": 0.05}})
    killer = KillWorker(at=3)
    _engine, summary, run_dir = run(cfg, tmp_path, killer)
    assert killer.killed is not None
    rows = read_rows(run_dir)  # asserts no iteration was recorded twice
    assert all(sorted(r) == list(range(1, 9)) for r in rows.values())
    assert summary["iterations"] == 32 and not summary["errors"]
    lost = [e for e in journal(run_dir) if e["event"] == "worker_lost"]
    assert lost and sum(summary["failures"].values()) == len(lost)
    assert journal(run_dir)[-1]["event"] == "end"


def test_a_worker_copies_a_state_while_another_trial_trains(ray_local):
    """export() runs on the transfer thread: it does not wait for a running segment, and a
    state not at the iteration asked for is a clear error, never a wrong state."""
    from pbtune.engines.native.worker import RemoteWorker
    from tests.engines.test_native import TOY

    w = RemoteWorker.remote(TOY, {"sleep": 1.5}, None, 0, state_on_worker="always")
    kw = {"metric": "score", "mode": "max"}
    ray.get(w.run.remote("a", {"lr": 0.5}, 1, 1, **kw)[0])
    long_run = w.run.remote("b", {"lr": 0.1}, 2, 2, **kw)  # ~3 s of training
    done, state = w.export.remote("a", 1)
    ready, _ = ray.wait([done], timeout=2.0)
    assert ready, "the export waited for the running segment"
    assert ray.get(state)["iteration"] == 1
    result = ray.get(long_run[0])
    assert result["held"] and ray.get(long_run[2]) is None  # no snapshot came back
    with pytest.raises(ray.exceptions.RayTaskError, match="gone from this worker"):
        ray.get(w.export.remote("a", 5)[1])
    ray.kill(w)


def test_snapshots_still_go_to_the_store_for_small_states(ray_local, tmp_path):
    engine, _summary, _run_dir = run(toy_config(**SETS), tmp_path)  # auto: a few bytes each
    assert all(isinstance(t.snapshot, ray.ObjectRef) for t in engine.coordinator.trials.values())


def test_config_rejects_an_unknown_state_setting(tmp_path):
    with pytest.raises(Exception, match="state_on_worker"):
        toy_config(**{"resources.state_on_worker": "sometimes"})


def test_sigkill_of_a_held_run_then_resume_gives_the_uninterrupted_run(ray_local, tmp_path):
    """The workers read the cut's checkpoints themselves (FileState) and the run ends as one
    that was never killed: same decisions, same rows, each once."""
    from tests.engines.test_resume import killed_resumed_and_reference

    run_dir, ref_dir = killed_resumed_and_reference(
        tmp_path, **{"resources.state_on_worker": "always"})
    assert table(run_dir) == table(ref_dir)


def test_auto_keeps_states_once_the_first_one_is_larger_than_the_threshold(ray_local):
    from pbtune.engines.native.worker import RemoteWorker
    from tests.conftest import REPO

    large = f"{REPO}/bench/large_state.py:LargeState"  # a 1 MB float32 blob here
    kw = {"metric": "score", "mode": "max"}
    for limit_mb, held_later in ((0.5, True), (512.0, False)):
        w = RemoteWorker.remote(large, {"state_mb": 1, "compute_s": 0.0}, None, 0,
                                state_on_worker="auto", large_state_mb=limit_mb)
        first = w.run.remote("a", {"lr": 0.5}, 1, 1, **kw)
        assert ray.get(first[2]) is not None  # measured on the first state it returns
        second = w.run.remote("a", {"lr": 0.5}, 1, 2, **kw)
        assert bool(ray.get(second[0]).get("held")) is held_later
        assert (ray.get(second[2]) is None) is held_later
        ray.kill(w)


def test_a_held_state_that_cannot_be_written_stops_the_run_with_one_line(ray_local, tmp_path,
                                                                          capsys):
    """Held states are not pickled after every segment to check them; the first write that
    fails names the file and the cause, and the run stops (exit 2) with what it has kept."""
    from pbtune.cli import main
    from tests.engines.test_native import TOY

    code = main(["run", "--quiet", "--no-plots", "--results-dir", str(tmp_path), "--workload",
                 TOY, "--set", 'options={"state_error_above": 0.0}', "--set", "population=2",
                 "--set", "stop.max_iterations=2", "--set", "checkpoint_interval=1",
                 "--set", "resources.state_on_worker=always"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "could not write" in lines[0] and "get_state()" in lines[0]
    assert "Traceback" not in err


class KillDonor:
    """Kills the donor's worker the moment an exploit is decided: its state's export (asked
    for just before) fails, and so does the target's segment that needed it."""

    def __init__(self) -> None:
        self.engine, self.killed = None, None

    def on_exploit(self, decision):
        if self.killed is None:
            self.killed = self.engine.coordinator.trials[decision.donor].worker
            ray.kill(self.engine.pool.workers[self.killed])


def test_a_donor_lost_during_its_export_costs_a_rollback_not_a_trial(ray_local, tmp_path):
    cfg = toy_config(**{**SETS, "resources.state_on_worker": "always", "checkpoint_interval": 1,
                        "options": {"sleep": 0.05}})
    killer = KillDonor()
    _engine, summary, run_dir = run(cfg, tmp_path, killer)
    assert killer.killed is not None
    assert not summary["errors"], summary["errors"]  # no trial is blamed for a lost input
    rows = read_rows(run_dir)  # each iteration once
    assert all(sorted(r) == list(range(1, 7)) for r in rows.values())
    assert [e for e in journal(run_dir) if e["event"] == "worker_lost"]


def test_an_exported_copy_is_in_the_store_before_its_memory_is_reused(ray_local):
    """export() returns a copy Ray serialises after the call; its arrays go back for reuse only
    once Ray has dropped it, so every exported state is the one at its own iteration."""
    from pathlib import Path

    from pbtune.engines.native.worker import RemoteWorker

    bench = Path(__file__).resolve().parents[2] / "bench" / "large_state.py"
    w = RemoteWorker.remote(f"{bench}:LargeState", {"state_mb": 4, "compute_s": 0.0}, None, 0,
                            state_on_worker="always", state_buffers=1)
    kw = {"metric": "score", "mode": "max"}
    refs, after = [], None
    for it in range(1, 6):
        # pin_start: a copy of the start state stays pinned while later copies are taken
        ray.get(w.run.remote("a", {"lr": 0.5}, 1, it, after=after, pin_start=True, **kw)[0])
        after, state = w.export.remote("a", it)
        refs.append(state)
        if it > 1:
            after, state = w.export.remote("a", it - 1)  # from the pin
            refs.append(state)
    reused = ray.get(w.__ray_call__.remote(lambda self: self.held.buffers.reused))
    assert reused >= 3  # the copies' memory was reused...
    for ref in refs:  # ...and no exported or pinned state changed under its reader
        s = ray.get(ref)
        it = s["iteration"]
        assert s["value"] == 0.5 * it
        assert (s["blob"][:it] == 1.5).all() and (s["blob"][it:] == 0.5).all(), it
    ray.kill(w)
