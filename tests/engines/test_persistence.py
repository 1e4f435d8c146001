"""The run directory's writer (engines/persistence.py) with states written where they are held:
the worker's file is checked from the driver's side, best candidates are coalesced."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbtune.engines.core.events import Checkpoint, Held, SaveBest
from pbtune.engines.persistence import Persistence
from pbtune.errors import UserError
from pbtune.store.checkpoints import CheckpointStore, write_state_file
from pbtune.store.journal import Journal, read_journal


def writer(tmp_path: Path, start_write, discard=None) -> Persistence:
    return Persistence(tmp_path, Journal(tmp_path, {"config_sha256": None}),
                       fetch=lambda h: pytest.fail("a held state was fetched by the driver"),
                       start_write=start_write, discard=discard)


def test_a_worker_written_checkpoint_is_verified_and_journalled(tmp_path):
    asked = []

    def start_write(handle, path):  # what a worker does: the copy now, the write later
        asked.append((handle.trial_id, handle.iteration, path))
        state = {"iteration": handle.iteration}
        return lambda: write_state_file(path, state)

    p = writer(tmp_path, start_write)
    p.submit(Checkpoint("t0", 2, Held(0, "t0", 2), True, {"lr": 0.1}))
    assert asked and asked[0][:2] == ("t0", 2)  # asked for when submitted, not later
    p.drain()
    p.check()
    p.close()
    rec = next(e for e in read_journal(tmp_path)[1] if e["event"] == "checkpoint")
    assert CheckpointStore(tmp_path).load(rec) == {"iteration": 2}


def test_a_file_the_driver_cannot_see_is_a_clear_error(tmp_path):
    """A worker on another node wrote to a run directory that is not shared."""
    p = writer(tmp_path, lambda handle, path: lambda: {"sha256": "0" * 64, "bytes": 123})
    p.submit(Checkpoint("t0", 2, Held(1, "t0", 2), True, {}))
    p.drain()
    with pytest.raises(UserError, match="filesystem every node shares"):
        p.check()
    p.close()


def test_only_the_newest_best_candidate_is_kept(tmp_path):
    """Two bests queued behind a slow write: the older is discarded (its file goes), never
    written over the newer one."""
    import threading

    moved, dropped, release = [], [], threading.Event()

    def start_write(handle, path):
        if isinstance(handle, Held):  # the slow checkpoint that keeps the writer busy
            return lambda: (release.wait(10), write_state_file(path, {}))[1]

        def move():
            moved.append(handle)
            return write_state_file(path, {"best": handle})
        return move

    p = writer(tmp_path, start_write, discard=dropped.append)
    p.submit(Checkpoint("t0", 1, Held(0, "t0", 1), True, {}))
    p.submit(SaveBest("a", {"trial_id": "t0", "iteration": 1, "metric": 1.0}))
    p.submit(SaveBest("b", {"trial_id": "t1", "iteration": 1, "metric": 2.0}))
    release.set()
    p.drain()
    p.close()
    best = [e for e in read_journal(tmp_path)[1] if e["event"] == "best"]
    assert [b["trial_id"] for b in best] == ["t1"]
    assert moved == ["b"] and dropped == ["a"]


@pytest.mark.parametrize("held", [False, True])
def test_a_relative_run_directory_is_written_where_it_says(tmp_path, monkeypatch, held):
    """``--results-dir results`` gives a relative run directory: no path is joined twice."""
    monkeypatch.chdir(tmp_path)
    run_dir = Path("results") / "run"
    run_dir.mkdir(parents=True)
    seen = []

    def start_write(handle, path):
        if not held:
            return None
        seen.append(path)
        return lambda: write_state_file(path, {"iteration": 3})

    p = Persistence(run_dir, Journal(run_dir, {"config_sha256": None}),
                    fetch=lambda h: {"iteration": 3}, start_write=start_write)
    p.submit(Checkpoint("t0", 3, Held(0, "t0", 3), True, {}))
    p.drain()
    p.check()
    p.close()
    assert (tmp_path / "results" / "run" / "checkpoints" / "t0" / "iter_000003.pt").is_file()
    assert all(str(path).startswith("results/run/") for path in seen)
