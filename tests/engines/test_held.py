"""A worker's held states (engines/native/held.py), without Ray: copies are the state at the
iteration asked for or a clear error, pins outlive training, writes are atomic and a newer best
candidate replaces one not written yet."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pbtune.engines.native import held_writer as held_module
from pbtune.engines.native.held import HeldStates, StateGone, Superseded, state_nbytes
from pbtune.store.checkpoints import file_sha256, load_state


class Counter:
    """A workload stand-in: a number per iteration."""

    def __init__(self) -> None:
        self.iteration, self.value = 0, 0.0

    def step(self) -> None:
        self.iteration += 1
        self.value += 1.5

    def get_state(self) -> dict:
        return {"iteration": self.iteration, "value": self.value}


def test_a_copy_is_the_state_at_the_iteration_asked_or_an_error():
    live = {"a": Counter()}
    h = HeldStates(live)
    live["a"].step()
    assert h.copy("a", 1) == {"iteration": 1, "value": 1.5}
    with pytest.raises(StateGone, match="at iteration 1"):
        h.copy("a", 0)
    h.begin("a", pin=False)
    with pytest.raises(StateGone, match="training"):
        h.copy("a", 1)  # never a state that is changing
    h.end()
    with pytest.raises(StateGone, match="not held here"):
        h.copy("b", 1)


def test_a_pin_keeps_the_starting_state_until_unpinned():
    live = {"a": Counter()}
    h = HeldStates(live)
    live["a"].step()
    h.begin("a", pin=True)  # released past a boundary: it may still be a donor at 1
    live["a"].step()
    assert h.copy("a", 1) == {"iteration": 1, "value": 1.5}  # while it trains on
    h.end()
    assert h.copy("a", 1)["value"] == 1.5 and h.copy("a", 2)["value"] == 3.0
    h.unpin("a", 1)
    with pytest.raises(StateGone):
        h.copy("a", 1)


def test_a_trial_that_moves_away_can_leave_its_state_pinned_without_a_copy():
    live = {"a": Counter()}
    h = HeldStates(live)
    live["a"].step()
    workload = live["a"]
    h.drop("a", keep_at=1)
    assert "a" not in live and h.pins[("a", 1)] is workload  # the object itself, no copy
    assert h.copy("a", 1)["iteration"] == 1
    h.drop("a")  # a plain drop leaves pins to their handles
    assert h.copy("a", 1)["iteration"] == 1


def test_writes_are_atomic_files_with_their_sha256(tmp_path):
    h = HeldStates({})
    token = h.save({"w": list(range(1000))}, tmp_path / "x.pt")
    rec = h.saved(token, timeout_s=30)
    assert file_sha256(tmp_path / "x.pt") == (rec["sha256"], rec["bytes"])
    assert load_state(tmp_path / "x.pt") == {"w": list(range(1000))}
    assert not list(tmp_path.glob("*.tmp"))
    h.close()


def test_a_newer_best_candidate_replaces_one_not_written_yet(tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real = held_module.write_state_file

    def slow(path, state):
        started.set()
        release.wait(10)
        return real(path, state)

    monkeypatch.setattr(held_module, "write_state_file", slow)
    h = HeldStates({})
    first = h.save({"n": 0}, tmp_path / "c0.pt", best=(0.0, "max"))
    assert started.wait(10)  # being written: it is not replaced
    older = h.save({"n": 1}, tmp_path / "c1.pt", best=(1.0, "max"))
    newer = h.save({"n": 2}, tmp_path / "c2.pt", best=(2.0, "max"))  # never waits
    # Newer but worse (its segment started before the queued best was known): dropped, since
    # the queued one may be the run's best.
    worse = h.save({"n": 3}, tmp_path / "c3.pt", best=(1.5, "max"))
    release.set()
    assert h.saved(first, 30)["bytes"] > 0 and h.saved(newer, 30)["bytes"] > 0
    for lost in (older, worse):
        with pytest.raises(Superseded):
            h.saved(lost, 30)
    assert not (tmp_path / "c1.pt").exists() and not (tmp_path / "c3.pt").exists()
    assert load_state(tmp_path / "c2.pt") == {"n": 2}
    h.close()


def test_checkpoints_wait_when_the_queue_is_full(tmp_path, monkeypatch):
    release = threading.Event()
    real = held_module.write_state_file
    monkeypatch.setattr(held_module, "write_state_file",
                        lambda path, state: (release.wait(10), real(path, state))[1])
    h = HeldStates({}, pending_writes=1)
    h.save({"n": 0}, tmp_path / "a.pt")  # taken by the writer
    h.save({"n": 1}, tmp_path / "b.pt")  # queued: the queue is full now
    third = threading.Thread(target=h.save, args=({"n": 2}, tmp_path / "c.pt"))
    third.start()
    third.join(0.5)
    assert third.is_alive()  # back-pressure: no third copy held in memory
    release.set()
    third.join(10)
    assert not third.is_alive()
    h.close()
    assert all((tmp_path / f"{n}.pt").is_file() for n in "abc")


def test_state_size_counts_arrays_and_tensors():
    import numpy as np
    import torch

    state = {"w": np.zeros(1000, dtype=np.float32), "t": [torch.zeros(10, dtype=torch.float64)],
             "n": 3, "b": b"xyz"}
    assert state_nbytes(state) == 4000 + 80 + 3


def test_unknown_paths_are_written_where_asked(tmp_path):
    h = HeldStates({})
    assert h.saved(h.save({}, Path(tmp_path) / "deep" / "x.pt"), 30)["bytes"] > 0
    h.close()


def _blocked_writer(monkeypatch):
    """The writer thread stalls on its first file until the returned event is set."""
    release, started = threading.Event(), threading.Event()
    real = held_module.write_state_file

    def slow(path, state):
        if not started.is_set():
            started.set()
            release.wait(10)
        return real(path, state)

    monkeypatch.setattr(held_module, "write_state_file", slow)
    return started, release


@pytest.mark.parametrize("then", ["writer", "begin", "drop", "drop_keep"])
def test_a_live_best_candidate_is_the_state_at_its_iteration_whoever_copies_it(
        tmp_path, monkeypatch, then):
    """A best candidate is queued uncopied (Live); the writer copies it when it gets to it,
    or the trial's next segment (begin) or its move (drop) copies it first. In every order
    the file holds the state at the candidate's iteration."""
    from pbtune.engines.native.held import Live

    started, release = _blocked_writer(monkeypatch)
    live = {"a": Counter()}
    h = HeldStates(live)
    h.save({"x": 0}, tmp_path / "first.pt")  # keeps the writer busy
    assert started.wait(10)
    live["a"].step()
    token = h.save(Live("a", 1), tmp_path / "best.pt", best=(1.5, "max"))
    if then == "begin":
        h.begin("a", pin=False)
        live["a"].step()  # trains on: the candidate was copied before
        h.end()
    elif then in ("drop", "drop_keep"):
        h.drop("a", keep_at=1 if then == "drop_keep" else None)
    release.set()
    h.saved(token, 30)
    assert load_state(tmp_path / "best.pt") == {"iteration": 1, "value": 1.5}
    h.close()


def test_a_live_candidate_whose_state_left_is_an_error_not_a_wrong_file(tmp_path, monkeypatch):
    from pbtune.engines.native.held import Live

    started, release = _blocked_writer(monkeypatch)
    h = HeldStates({"a": Counter()})
    h.save({"x": 0}, tmp_path / "first.pt")
    assert started.wait(10)
    token = h.save(Live("a", 3), tmp_path / "best.pt", best=(1.0, "max"))  # never at 3
    release.set()
    with pytest.raises(StateGone):
        h.saved(token, 30)
    assert not (tmp_path / "best.pt").exists()
    h.close()


def test_a_copy_in_progress_holds_up_its_own_trial_only():
    """Copies run outside the lock: a slow copy of trial a delays a's next segment (it would
    change the state being copied) but not b's."""
    live = {"a": Counter(), "b": Counter()}
    h = HeldStates(live)
    live["a"].step()
    entered, release = threading.Event(), threading.Event()
    real = h.buffers.copy

    def slow(workload):
        entered.set()
        release.wait(10)
        return real(workload)

    h.buffers.copy = slow
    out = {}
    copier = threading.Thread(target=lambda: out.setdefault("copy", h.copy("a", 1)))
    copier.start()
    assert entered.wait(10)
    h.begin("b", pin=False)  # not held up
    h.end()
    a_began = threading.Event()
    starter = threading.Thread(target=lambda: (h.begin("a", pin=False), a_began.set()))
    starter.start()
    assert not a_began.wait(0.5)  # a waits for its copy
    release.set()
    assert a_began.wait(10)
    copier.join(10)
    starter.join(10)
    assert out["copy"] == {"iteration": 1, "value": 1.5}
