"""A worker's held states (engines/native/held.py), without Ray: copies are the state at the
iteration asked for or a clear error, pins outlive training, writes are atomic and a newer best
candidate replaces one not written yet."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pbtune.engines.native import held as held_module
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
    first = h.save({"n": 0}, tmp_path / "c0.pt", latest_only=True)
    assert started.wait(10)  # being written: it is not replaced
    older = h.save({"n": 1}, tmp_path / "c1.pt", latest_only=True)
    newer = h.save({"n": 2}, tmp_path / "c2.pt", latest_only=True)  # never waits
    release.set()
    assert h.saved(first, 30)["bytes"] > 0 and h.saved(newer, 30)["bytes"] > 0
    with pytest.raises(Superseded):
        h.saved(older, 30)
    assert not (tmp_path / "c1.pt").exists() and load_state(tmp_path / "c2.pt") == {"n": 2}
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
