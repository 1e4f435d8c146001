"""A worker's background writer of held states: checkpoints and best-result candidates.

Why: a state of gigabytes takes seconds to write, and training must go on meanwhile. Writes run
on one thread, in order; a checkpoint waits only when ``pending_writes`` are queued (copies of
gigabytes queued without bound would exhaust host memory). Best candidates are different: only
the best matters, so at most one waits, and it may not be copied yet (:class:`Live`): the copy
is taken when the writer gets to it, or by the worker just before the state changes.
No Ray here; :mod:`pbtune.engines.native.held` owns the states and hands this a resolver.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbtune.engines.base import is_better
from pbtune.store.checkpoints import write_state_file


@dataclass(frozen=True)
class Live:
    """A best candidate not copied yet: ``trial_id``'s live state at ``iteration`` here.

    Why: a segment that beats the best ends there, and its state stays as it is until the
    trial trains again. The copy is taken by the writer when it gets to it, or by the worker
    just before the state changes or leaves, and never if a better candidate from this worker
    comes first (on a run whose best improves at every iteration, most are replaced uncopied).
    """

    trial_id: str
    iteration: int


class Superseded(RuntimeError):
    """A best-result candidate was not written: a better one from this worker replaced it."""


Job = tuple[Path, Any, Future]  # where, what (a state, or a Live to resolve), its result


class Writer:
    """Writes queued states on a background thread.

    Args:
        outer: the owner's lock, taken before this one's (the order the owner takes them in).
        resolve: under ``outer``, a :class:`Live` → a callable that returns its state (may
            raise ``LookupError``: the state is gone).
        pending_writes: checkpoints queued at most; :meth:`save` waits beyond.
    """

    def __init__(self, outer: Any, resolve: Callable[[Live], Callable[[], Any]],
                 pending_writes: int = 2) -> None:
        self._outer, self._resolve, self._limit = outer, resolve, pending_writes
        self._cond = threading.Condition()
        self._jobs: deque[Job] = deque()
        self._best: tuple[Path, Any, Future, float] | None = None  # + its metric value
        self._closed = False
        self._futures: dict[int, Future] = {}
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None

    def save(self, state: Any, path: Path, best: tuple[float, str] | None = None) -> int:
        """Queue ``state`` (a copy nobody else changes, or a :class:`Live` best candidate) for
        writing to ``path``; a token for :meth:`saved`. A best candidate (``best``: its metric
        value and mode) never waits: one not started yet is replaced by a newer one that beats
        it, and a newer one that does not is dropped — the loser's :meth:`saved` raises
        :class:`Superseded` (the coordinator ranks the winner above it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pbtune-held-writer",
                                            daemon=True)
            self._thread.start()
        token = next(self._tokens)
        future: Future[dict[str, Any]] = Future()
        self._futures[token] = future
        with self._cond:
            if best is not None:
                queued = self._best
                if queued is not None and not is_better(best[0], queued[3], best[1]):
                    future.set_exception(Superseded(f"{path}: the best queued here beats it"))
                    return token
                if queued is not None:
                    queued[2].set_exception(Superseded(f"{queued[0]}: a newer, better best"))
                self._best = (Path(path), state, future, best[0])
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

    def copy_live(self, trial_id: str, copy: Callable[[Live], Any]) -> None:
        """The queued best is ``trial_id``'s live state, about to change or leave: replace it
        by ``copy(live)``. The caller holds ``outer``, so the writer cannot take it meanwhile;
        the copy runs outside this lock, so queueing a checkpoint does not wait for it."""
        with self._cond:
            best = self._best
            if best is None or not isinstance(best[1], Live) or best[1].trial_id != trial_id:
                return
        try:
            state: Any = copy(best[1])
        except LookupError as exc:  # not at that iteration any more
            state = exc
        with self._cond:
            if self._best is not best:  # replaced meanwhile (its future has its error)
                return
            if isinstance(state, LookupError):
                best[2].set_exception(state)
                self._best = None
            else:
                self._best = (best[0], state, *best[2:])

    def _next(self) -> tuple[Path, Callable[[], Any] | None, Future] | None:
        with self._cond:
            while not self._jobs and self._best is None and not self._closed:
                self._cond.wait()
        with self._outer, self._cond:  # a Live is resolved before its trial can train again
            if self._jobs:
                path, state, future = self._jobs.popleft()
            elif self._best is not None:
                (path, state, future), self._best = self._best[:3], None
            else:
                return None  # closed
            self._cond.notify_all()
            if not isinstance(state, Live):
                return path, lambda: state, future
            try:
                return path, self._resolve(state), future
            except LookupError as exc:
                future.set_exception(exc)
                return path, None, future

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            path, take, future = job
            del job
            if take is None:  # gone before it could be copied (its error is set)
                continue
            try:
                state = take()
                future.set_result(write_state_file(path, state))
            except BaseException as exc:  # reported to whoever waits for it
                future.set_exception(exc)
            state = take = None  # the copy's memory goes back before the next one is taken

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is not None:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(timeout=600)
