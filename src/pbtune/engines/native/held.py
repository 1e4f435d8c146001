"""A worker's side of the large-state path: states that stay where they were trained.

Why: a transformer fine-tune's state (BLOOM-560M with AdamW: about 6.7 GB) cannot be copied into
the object store after every segment, nor shipped through the driver to be written. A worker
that *holds* its states keeps each trial live and hands out a copy only when one is needed:

- an exploit's donor state, once, into the object store for its target (:meth:`export`);
- a checkpoint or a best-result candidate, written by this worker to the (shared) run
  directory, atomically, on a background thread while training goes on (:meth:`save`).

A copy is never taken while the trial it copies is training (a segment of a trial waits for
copies of it in progress; copies of other trials go on beside it), so a copy is the state at
exactly the iteration the coordinator asked for. Copies go into memory the worker reuses
(:mod:`pbtune.engines.native.buffers`). A trial released past a boundary
whose decisions are not made yet may still be a donor there: its segment *pins* a copy of the
state it starts from (:meth:`begin`), dropped once exported or when the trial runs again.
No Ray here: :mod:`pbtune.engines.native.worker` exposes these as actor methods.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from pbtune.engines.native.buffers import CopyBuffers
from pbtune.engines.native.held_writer import Live, Superseded, Writer
from pbtune.engines.segment import Parked
from pbtune.store.copies import state_nbytes

__all__ = ["FileState", "HeldStates", "Live", "StateGone", "Superseded", "holds_states",
           "materialize", "state_nbytes"]


def holds_states(setting: str, cls: Any) -> bool | None:
    """Whether a worker keeps its trials' states (``resources.state_on_worker``): ``always``,
    ``never``, or ``auto``: the workload's ``large_state`` flag, None when it has none (then
    the first state's size decides, :func:`state_nbytes` against ``large_state_mb``)."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    flag = getattr(cls, "large_state", None)
    return None if flag is None else bool(flag)


class FileState:
    """A checkpoint a worker reads itself (the driver never loads a held state): its absolute
    path and sha256, verified while it is read."""

    def __init__(self, path: str, sha256: str) -> None:
        self.path, self.sha256 = path, sha256

    def load(self) -> Any:
        from pbtune.store.checkpoints import CheckpointCorrupt, file_sha256, load_state

        sha, size = file_sha256(Path(self.path))
        if sha != self.sha256:
            raise CheckpointCorrupt(f"{self.path}: checksum mismatch ({size} bytes)")
        return load_state(self.path)


def materialize(state: Any) -> Any:
    """A state given to a segment: read from its file when it is a :class:`FileState`."""
    return state.load() if isinstance(state, FileState) else state


class StateGone(LookupError):
    """The state asked for is not on this worker any more (moved on, dropped, or never here)."""


class HeldStates:
    """Copies and writes of the states a worker holds.

    Args:
        live: the worker's trial id → live workload mapping (shared with the training thread).
        pending_writes: checkpoints queued for writing at most (a queue of copies of gigabytes
            would exhaust host memory: the caller waits instead). Best-result candidates never
            wait: a newer one replaces one not started yet (only the newest best matters).
        buffers: copies kept for reuse (:class:`~pbtune.engines.native.buffers.CopyBuffers`).
    """

    def __init__(self, live: MutableMapping[str, Any], pending_writes: int = 2,
                 buffers: int = 2) -> None:
        self.live = live
        self.buffers = CopyBuffers(buffers)
        # Guards live, pins, training and copying (re-entrant); copies themselves run outside
        # it, so a copy of one trial never holds up the start of another's segment.
        self.lock = threading.Condition(threading.RLock())
        self.training: str | None = None  # the trial the training thread is changing now
        self.copying: Counter[str] = Counter()  # trial → copies of its live state in progress
        # (trial, iteration) → a state there: a copy, or the workload itself once it moved away
        self.pins: dict[tuple[str, int], Any] = {}
        self.writer = Writer(self.lock, self._resolve, pending_writes)

    # -- the training thread ---------------------------------------------------------------------
    def begin(self, trial_id: str, pin: bool) -> None:
        """A segment of ``trial_id`` starts: copies of it wait for its end; ``pin`` keeps a copy
        of the state it starts from (when held here) until :meth:`unpin`."""
        with self.lock:
            self.lock.wait_for(lambda: not self.copying[trial_id])
            self._copy_live_best(trial_id)
            workload = self.live.get(trial_id)
            if pin and workload is not None:
                key = (trial_id, workload.iteration)
                if key not in self.pins:
                    self.pins[key] = Parked(self.buffers.copy(workload), workload.iteration)
            self.training = trial_id

    def end(self, prewarm: bool = False) -> None:
        """The segment ended; ``prewarm``: make the copies' memory this worker will want in the
        background now that its state's layout is known (:meth:`CopyBuffers.prewarm`)."""
        with self.lock:
            workload = self.live.get(self.training) if prewarm and self.training else None
            self.training = None
        if workload is not None:
            self.buffers.prewarm(workload)

    # -- copies (the transfer thread) ------------------------------------------------------------
    def copy(self, trial_id: str, iteration: int) -> Any:
        """``trial_id``'s state at ``iteration`` (from its pin, else its live state), a copy
        nobody changes.

        Raises:
            StateGone: neither is at ``iteration`` (a coordinator bug, or the trial moved).
        """
        with self.lock:
            take = self._taker(trial_id, iteration)
        return take()

    def _taker(self, trial_id: str, iteration: int) -> Callable[[], Any]:
        """Under self.lock: a callable that returns the state at ``iteration`` — a pinned copy
        as is, else a copy of the workload, taken outside the lock with the trial marked as
        being copied so that its next segment waits for it (the lock is re-entrant: a caller
        that holds it may take the copy at once)."""
        pinned = self.pins.get((trial_id, iteration))
        if isinstance(pinned, Parked):
            state = pinned.state  # a pinned copy is never changed: shared as is
            return lambda: state
        workload = pinned  # a workload that moved away and was pinned: nothing trains it
        if workload is None:
            workload = self.live.get(trial_id)
            if workload is None or self.training == trial_id or workload.iteration != iteration:
                where = "not held here" if workload is None else (
                    "training" if self.training == trial_id else
                    f"at iteration {workload.iteration}")
                raise StateGone(f"trial {trial_id}'s state at iteration {iteration} is gone "
                                f"from this worker ({where})")
        self.copying[trial_id] += 1

        def take() -> Any:
            try:
                return self.buffers.copy(workload)
            finally:
                with self.lock:
                    self.copying[trial_id] -= 1
                    self.lock.notify_all()
        return take

    def drop(self, trial_id: str, keep_at: int | None = None) -> None:
        """Forget a trial that moved; ``keep_at``: its state there is still wanted (pinned)."""
        with self.lock:
            self._copy_live_best(trial_id)
            workload = self.live.pop(trial_id, None)
            if keep_at is not None and workload is not None and workload.iteration == keep_at:
                self.pins[(trial_id, keep_at)] = workload  # no copy: nothing trains it here

    def unpin(self, trial_id: str, iteration: int) -> None:
        with self.lock:
            self.pins.pop((trial_id, iteration), None)

    def _copy_live_best(self, trial_id: str) -> None:
        """A best candidate still live (:class:`Live`) of ``trial_id``, which is about to change
        or leave, is copied now (the caller holds self.lock)."""
        self.writer.copy_live(trial_id, lambda live: self._resolve(live)())

    def _resolve(self, live: Live) -> Callable[[], Any]:
        """For the writer, under self.lock: a callable that returns the candidate's state."""
        return self._taker(live.trial_id, live.iteration)

    # -- writes (a background thread, :mod:`pbtune.engines.native.held_writer`) ------------------
    def save(self, state: Any, path: Path, best: tuple[float, str] | None = None) -> int:
        """Queue a copy (or a :class:`Live` best candidate) for writing; see :meth:`Writer.save`."""
        return self.writer.save(state, path, best)

    def saved(self, token: int, timeout_s: float | None = None) -> dict[str, Any]:
        return self.writer.saved(token, timeout_s)

    def close(self) -> None:
        self.writer.close()
        self.buffers.clear()
