"""A worker's side of the large-state path: states that stay where they were trained.

Why: a transformer fine-tune's state (BLOOM-560M with AdamW: about 6.7 GB) cannot be copied into
the object store after every segment, nor shipped through the driver to be written. A worker
that *holds* its states keeps each trial live and hands out a copy only when one is needed:

- an exploit's donor state, once, into the object store for its target (:meth:`export`);
- a checkpoint or a best-result candidate, written by this worker to the (shared) run
  directory, atomically, on a background thread while training goes on (:meth:`save`).

Every copy is taken under one lock, never while the trial it copies is training, so a copy is
the state at exactly the iteration the coordinator asked for. A trial released past a boundary
whose decisions are not made yet may still be a donor there: its segment *pins* a copy of the
state it starts from (:meth:`begin`), dropped once exported or when the trial runs again.
No Ray here: :mod:`pbtune.engines.native.worker` exposes these as actor methods.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import MutableMapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pbtune.engines.segment import Parked
from pbtune.store.checkpoints import write_state_file


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


def state_nbytes(state: Any) -> int:
    """Bytes of the arrays and tensors in a state (what copying it moves); other leaves 0."""
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    if isinstance(state, (bytes, bytearray)):
        return len(state)
    nbytes = getattr(state, "nbytes", None)  # numpy arrays and torch tensors
    return int(nbytes) if isinstance(nbytes, int) else 0


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


class Superseded(RuntimeError):
    """A best-result candidate was not written: a newer one from this worker replaced it."""


class HeldStates:
    """Copies and writes of the states a worker holds.

    Args:
        live: the worker's trial id → live workload mapping (shared with the training thread).
        pending_writes: checkpoints queued for writing at most (a queue of copies of gigabytes
            would exhaust host memory: the caller waits instead). Best-result candidates never
            wait: a newer one replaces one not started yet (only the newest best matters).
    """

    def __init__(self, live: MutableMapping[str, Any], pending_writes: int = 2) -> None:
        self.live = live
        self.lock = threading.Lock()
        self.training: str | None = None  # the trial the training thread is changing now
        # (trial, iteration) → a state there: a copy, or the workload itself once it moved away
        self.pins: dict[tuple[str, int], Any] = {}
        self._cond = threading.Condition()
        self._jobs: deque[tuple[Path, Any, Future[dict[str, Any]]]] = deque()
        self._best: tuple[Path, Any, Future[dict[str, Any]]] | None = None
        self._limit = pending_writes
        self._closed = False
        self._futures: dict[int, Future[dict[str, Any]]] = {}
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None

    # -- the training thread ---------------------------------------------------------------------
    def begin(self, trial_id: str, pin: bool) -> None:
        """A segment of ``trial_id`` starts: copies of it wait for its end; ``pin`` keeps a copy
        of the state it starts from (when held here) until :meth:`unpin`."""
        with self.lock:
            workload = self.live.get(trial_id)
            if pin and workload is not None:
                key = (trial_id, workload.iteration)
                if key not in self.pins:
                    self.pins[key] = Parked(workload.get_state(), workload.iteration)
            self.training = trial_id

    def end(self) -> None:
        with self.lock:
            self.training = None

    # -- copies (the transfer thread) ------------------------------------------------------------
    def copy(self, trial_id: str, iteration: int) -> Any:
        """``trial_id``'s state at ``iteration`` (from its pin, else its live state), a copy
        nobody changes.

        Raises:
            StateGone: neither is at ``iteration`` (a coordinator bug, or the trial moved).
        """
        with self.lock:
            pinned = self.pins.get((trial_id, iteration))
            if pinned is not None:
                return pinned.get_state()  # a pinned copy is never changed: shared as is
            workload = self.live.get(trial_id)
            if workload is not None and self.training != trial_id and \
                    workload.iteration == iteration:
                return workload.get_state()
        where = "not held here" if workload is None else (
            "training" if self.training == trial_id else f"at iteration {workload.iteration}")
        raise StateGone(f"trial {trial_id}'s state at iteration {iteration} is gone from this "
                        f"worker ({where})")

    def drop(self, trial_id: str, keep_at: int | None = None) -> None:
        """Forget a trial that moved; ``keep_at``: its state there is still wanted (pinned)."""
        with self.lock:
            workload = self.live.pop(trial_id, None)
            if keep_at is not None and workload is not None and workload.iteration == keep_at:
                self.pins[(trial_id, keep_at)] = workload  # no copy: nothing trains it here

    def unpin(self, trial_id: str, iteration: int) -> None:
        with self.lock:
            self.pins.pop((trial_id, iteration), None)

    # -- writes (a background thread) ------------------------------------------------------------
    def save(self, state: Any, path: Path, latest_only: bool = False) -> int:
        """Queue ``state`` (a copy nobody else changes) for writing to ``path``; a token for
        :meth:`saved`. A checkpoint waits while ``pending_writes`` are queued; a ``latest_only``
        write (a best candidate) replaces the one queued before it, whose :meth:`saved` then
        raises :class:`Superseded`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pbtune-held-writer",
                                            daemon=True)
            self._thread.start()
        token = next(self._tokens)
        future: Future[dict[str, Any]] = Future()
        self._futures[token] = future
        with self._cond:
            if latest_only:
                if self._best is not None:
                    self._best[2].set_exception(Superseded(f"{self._best[0]}: a newer best"))
                self._best = (Path(path), state, future)
            else:
                while len(self._jobs) >= self._limit:
                    self._cond.wait()
                self._jobs.append((Path(path), state, future))
            self._cond.notify_all()
        return token

    def saved(self, token: int, timeout_s: float | None = None) -> dict[str, Any]:
        """``{"sha256", "bytes"}`` of the file once written (raises the write's error)."""
        future = self._futures[token]
        try:
            return future.result(timeout_s)
        finally:
            self._futures.pop(token, None)

    def _next(self) -> tuple[Path, Any, Future[dict[str, Any]]] | None:
        with self._cond:
            while not self._jobs and self._best is None and not self._closed:
                self._cond.wait()
            if self._jobs:
                job = self._jobs.popleft()
            elif self._best is not None:
                job, self._best = self._best, None
            else:
                return None  # closed
            self._cond.notify_all()
            return job

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            path, state, future = job
            del job
            try:
                future.set_result(write_state_file(path, state))
            except BaseException as exc:  # reported to whoever waits for it
                future.set_exception(exc)
            del state  # the copy's memory goes back before the next one is taken

    def close(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(timeout=600)
