"""CopyBuffers: a worker's copies of held states reuse the memory of copies nobody holds."""

from __future__ import annotations

import gc
import pickle
import threading

import numpy as np

from pbtune.engines.native.buffers import CopyBuffers, HeldCopy
from pbtune.engines.native.held import HeldStates
from pbtune.store.checkpoints import load_state, write_state_file


class Blob:
    """A workload-like object: a big array and a counter, with a state view."""

    def __init__(self, n: int = 1000, view: bool = True) -> None:
        self.blob = np.zeros(n, dtype=np.float32)
        self.iteration = 0
        if not view:
            self.state_view = None

    def train(self) -> None:
        self.iteration += 1
        self.blob[:] = self.iteration

    def get_state(self) -> dict:
        return {"blob": self.blob.copy(), "iteration": self.iteration}

    def state_view(self) -> dict:
        return {"blob": self.blob, "iteration": self.iteration}


def test_a_copy_dropped_is_reused_by_the_next_one():
    w, buffers = Blob(), CopyBuffers(limit=2)
    first = buffers.copy(w)
    address = first["blob"].ctypes.data
    assert isinstance(first, HeldCopy) and first["iteration"] == 0
    del first
    gc.collect()
    w.train()
    second = buffers.copy(w)
    assert second["blob"].ctypes.data == address and buffers.reused == 1
    assert second["iteration"] == 1 and (second["blob"] == 1).all()


def test_a_copy_still_held_is_never_written_into():
    w, buffers = Blob(), CopyBuffers(limit=2)
    kept = [buffers.copy(w)]
    for _ in range(5):
        w.train()
        kept.append(buffers.copy(w))
    assert [int(c["blob"][0]) for c in kept] == list(range(6)) and buffers.reused == 0
    # Holding only a part of a copy (a consumer that kept one array) is not enough: the copy
    # itself must be alive for its memory to stay out of reuse. Consumers keep whole copies.


def test_at_most_limit_copies_wait_unused():
    w, buffers = Blob(), CopyBuffers(limit=2)
    copies = [buffers.copy(w) for _ in range(4)]
    del copies
    gc.collect()
    assert buffers.kept() == 2
    buffers.clear()
    assert buffers.kept() == 0


def test_limit_zero_or_no_view_means_get_state():
    for buffers, w in ((CopyBuffers(limit=0), Blob()), (CopyBuffers(limit=2), Blob(view=False))):
        first = buffers.copy(w)
        assert type(first) is dict
        del first
        assert type(buffers.copy(w)) is dict and buffers.reused == 0


def test_a_copy_pickles_and_is_written_as_a_plain_dict(tmp_path):
    w, buffers = Blob(), CopyBuffers()
    w.train()
    copy = buffers.copy(w)
    assert type(pickle.loads(pickle.dumps(copy))) is dict
    write_state_file(tmp_path / "s.pt", copy)
    loaded = load_state(tmp_path / "s.pt")
    assert type(loaded) is dict and loaded["iteration"] == 1 and (loaded["blob"] == 1).all()


def test_held_states_write_copies_then_reuse_them(tmp_path):
    """The writer drops its copy after writing: the next copy (a new best, a checkpoint) goes
    into that memory, and every file written holds the state at its own iteration."""
    w = Blob(n=50_000)
    held = HeldStates({"t": w}, buffers=2)
    tokens = []
    for i in range(6):
        w.train()
        tokens.append(held.save(held.copy("t", i + 1), tmp_path / f"{i}.pt"))
        held.saved(tokens[-1], 30)  # written: its copy can go back
    held.close()
    assert held.buffers.reused >= 4
    for i in range(6):
        state = load_state(tmp_path / f"{i}.pt")
        assert state["iteration"] == i + 1 and (state["blob"] == i + 1).all()


def test_copies_dropped_on_other_threads_come_back_safely():
    w, buffers = Blob(), CopyBuffers(limit=3)
    copies = [buffers.copy(w) for _ in range(50)]
    threads = [threading.Thread(target=copies.pop) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert buffers.kept() == 3


def test_a_copy_is_not_kept_when_the_node_is_short_of_memory():
    """Kept copies never push a node into reclaim or Ray's OOM killer: with less than the
    reserve available (here: a reserve no node can meet) a copy dropped is freed."""
    w, buffers = Blob(), CopyBuffers(limit=2, reserve=1.0)
    first = buffers.copy(w)
    del first
    gc.collect()
    assert buffers.kept() == 0 and buffers.dropped == 1
    buffers.copy(w)
    assert buffers.reused == 0


def test_prewarm_makes_the_copies_memory_in_the_background():
    """The first `limit` copies land in memory made before they were asked for; a second
    prewarm makes nothing more; copies made later than that are new memory again."""
    w, buffers = Blob(), CopyBuffers(limit=2)
    thread = buffers.prewarm(w)
    thread.join()
    assert buffers.kept() == 2 and buffers.prewarmed == 2 and buffers.made == 2
    assert buffers.prewarm(w) is None  # all made already
    kept = []
    for _ in range(3):
        w.train()
        kept.append(buffers.copy(w))
    assert buffers.reused == 2 and buffers.made == 3
    assert [int(c["blob"][0]) for c in kept] == [1, 2, 3]
    del kept
    gc.collect()
    assert buffers.kept() == 2 and buffers.made == 2 and buffers.dropped == 1
    assert buffers.prewarm(w) is None


def test_prewarm_counts_copies_in_use():
    """Copies held elsewhere count: prewarm never grows the worker past `limit` copies."""
    w, buffers = Blob(), CopyBuffers(limit=2)
    held = buffers.copy(w)
    buffers.prewarm(w).join()
    assert buffers.kept() == 1 and buffers.made == 2
    del held
    gc.collect()
    assert buffers.kept() == 2 and buffers.made == 2


def test_prewarm_makes_nothing_when_the_node_is_short_or_reuse_is_off():
    w = Blob()
    short = CopyBuffers(limit=2, reserve=1.0)
    short.prewarm(w).join()
    assert short.kept() == 0 and short.made == 0
    assert CopyBuffers(limit=0).prewarm(w) is None
    assert CopyBuffers(limit=2).prewarm(Blob(view=False)) is None


def test_held_states_prewarm_after_a_segment_only_when_asked(tmp_path):
    live = {"t1": Blob()}
    held = HeldStates(live)
    held.begin("t1", pin=False)
    held.end()
    assert held.buffers.made == 0
    held.begin("t1", pin=False)
    held.end(prewarm=True)
    held.buffers._warming.join()
    assert held.buffers.kept() == 2
    held.close()
