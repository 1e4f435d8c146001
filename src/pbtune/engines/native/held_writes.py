"""The driver's side of the large-state path: asking workers for copies and writes, in order.

Why a module of its own: the executor should read as "commands become actor calls". What it
takes to move a state that stays on its worker (:class:`~pbtune.engines.core.events.Held`)
without the driver ever holding it — the export a donor gives its targets, the checkpoint its
worker writes, the best-result candidate written in the background, and the ordering that keeps
a later segment of the same trial from changing a state before it is copied — lives here.

Ordering: a worker runs copies and drops on one ``transfer`` thread, first come first served;
each returns a small object, and the next segment of that trial there is passed the latest
one (``after``): Ray starts the segment only once that call is done.
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from pbtune.engines.core.events import Held
from pbtune.engines.native.held import StateGone, Superseded
from pbtune.errors import UserError
from pbtune.store.checkpoints import LazyState

Write = Callable[[], dict[str, Any]]  # waits for a worker's write: {"sha256", "bytes"}


class BestFile:
    """A best-result candidate a worker is writing (``path``, a hidden file next to best.pt).

    Once nothing refers to it any more — the coordinator did not take it as the best, a newer
    best replaced it, or it was renamed into place — its worker removes the file if it is still
    there (after the write: never half a file left behind).
    """

    def __init__(self, worker: Any, token: Any, path: Path, iteration: int) -> None:
        self.worker, self.token, self.path, self.iteration = worker, token, path, iteration
        done = weakref.finalize(self, _remove, worker, token, str(path))
        done.atexit = False  # at exit Ray is gone; the next session removes leftovers

    def wait(self) -> dict[str, Any]:
        return _written(self.worker.saved.remote(self.token), str(self.path))


def _written(ref: Any, path: str) -> dict[str, Any]:
    """A worker's write's record. Its state gone with the worker stays a Ray error (the writer
    skips that checkpoint); a full or read-only disk is the OSError itself (the run stops with
    the disk message); anything else is the user's state: a one-line error that says so."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if cause is None or isinstance(cause, (StateGone, Superseded)):
            raise  # a Ray error: the write is skipped (a best candidate: a better one follows)
        if isinstance(cause, OSError):
            raise cause from None
        first = (str(cause).strip().splitlines() or [""])[0]
        raise UserError(f"a worker could not write {path} ({type(cause).__name__}: {first}); "
                        "get_state() must return what torch.save or pickle can write (tensors, "
                        "arrays, numbers, dicts, lists)") from None


def _remove(worker: Any, token: Any, path: str) -> None:
    try:
        worker.remove_file.remote(token, path)
    except Exception:  # Ray already shut down, or the worker is gone with its files' writes
        pass


def _unpin(worker: Any, trial_id: str, iteration: int) -> None:
    try:
        worker.unpin.remote(trial_id, iteration)
    except Exception:  # Ray already shut down, or the worker is gone with its pins
        pass


class HeldWrites:
    """Copies, drops and writes of held states on a :class:`WorkerPool`'s workers."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.run_dir: Path | None = None
        self._last: dict[tuple[int, str], Any] = {}  # (worker, trial) → latest queued call's ref
        self._seq = itertools.count()
        self.exports = self.shared_now = self.shared_peak = 0  # donor copies: made, alive, most

    # -- ordering --------------------------------------------------------------------------------
    def after(self, worker: int, trial_id: str) -> Any:
        """The call the next segment of ``trial_id`` on ``worker`` must wait for (or None)."""
        return self._last.pop((worker, trial_id), None)

    def forget(self, worker: int) -> None:
        """``worker`` was replaced: nothing queued on the old actor orders the new one."""
        for key in [k for k in self._last if k[0] == worker]:
            del self._last[key]

    def is_worker(self, worker: int, exc: Any, handle: Any = None) -> bool:
        """Whether an actor error ``exc`` is about ``worker`` itself (not a donor's worker);
        ``handle``: the worker's handle the segment ran on (a fused worker's other lane may
        have replaced it since)."""
        actor_id = getattr(exc, "actor_id", None)
        handle = handle if handle is not None else self.pool.workers[worker]
        return actor_id is None or actor_id == handle._actor_id.hex()

    # -- copies ----------------------------------------------------------------------------------
    def export(self, h: Held) -> Any:
        """An ObjectRef of ``h``'s state, copied off its worker (queued there now)."""
        done, state = self.pool.workers[h.worker].export.remote(h.trial_id, h.iteration)
        self._last[(h.worker, h.trial_id)] = done
        return state

    def share(self, handle: Any) -> None:
        """An exploit's donor state: exported once, counted once per target."""
        if not isinstance(handle, Held):
            return  # already in the object store or on disk
        if handle.shared is None:
            handle.shared = self.export(handle)
            self.exports += 1
            self.shared_now += 1
            self.shared_peak = max(self.shared_peak, self.shared_now)
        handle.consumers += 1

    def loaded(self, handle: Held) -> None:
        """One target of ``handle``'s shared copy has loaded it; the last one frees it."""
        handle.consumers -= 1
        if handle.consumers <= 0 and handle.shared is not None:
            handle.shared = None
            self.shared_now -= 1

    def stats(self) -> dict[str, int]:
        """Donor copies exported, and the most in the object store at once (its peak is about
        that many states: the issue-19 bound is exploits in flight + 1)."""
        return {"exports": self.exports, "exports_in_flight_peak": self.shared_peak}

    def drop(self, worker: int, trial_id: str, keep_at: int | None = None) -> None:
        self._last[(worker, trial_id)] = self.pool.workers[worker].drop.remote(trial_id, keep_at)

    def pin(self, h: Held) -> None:
        """``h`` is pinned on its worker: unpinned there once the driver has dropped ``h``."""
        done = weakref.finalize(h, _unpin, self.pool.workers[h.worker], h.trial_id, h.iteration)
        done.atexit = False

    # -- writes ----------------------------------------------------------------------------------
    def start_write(self, handle: Any, path: Path) -> Write | None:
        """Have the worker holding ``handle`` write it to ``path``; a callable that waits for
        ``{"sha256", "bytes"}``. None: not a held state (the caller fetches and writes it)."""
        if isinstance(handle, BestFile):
            def moved() -> dict[str, Any]:
                rec = handle.wait()
                os.replace(handle.path, path)  # same directory: atomic, no copy
                return rec
            return moved
        if not isinstance(handle, Held):
            return None
        path = Path(path).absolute()  # the worker's working directory may differ from ours
        worker = self.pool.workers[handle.worker]
        if handle.shared is not None:  # its copy is in the object store: any worker can write it
            token = worker.save_state.remote(handle.shared, str(path))
        else:
            token = worker.save.remote(handle.trial_id, handle.iteration, str(path))
            self._last[(handle.worker, handle.trial_id)] = token
        return lambda: _written(worker.saved.remote(token), str(path))

    def discard(self, handle: Any) -> None:
        """A best candidate that is no longer the best: its file goes when the handle does."""

    def best_path(self) -> str | None:
        """Where a segment's best-state candidate is written (None: no run directory; a held
        best state is then not kept)."""
        if self.run_dir is None:
            return None
        return str(Path(self.run_dir) / "checkpoints" / f".best_candidate_{next(self._seq)}.pt")

    def best_file(self, worker: int, result: dict[str, Any], trial_id: str) -> BestFile | None:
        token = result.get("best_token")
        if token is None:
            return None
        return BestFile(self.pool.workers[worker], token, Path(result["best_path"]),
                        int(result["best_iteration"]))

    def remove_candidates(self) -> None:
        """Delete best candidates nobody took: a crashed session's, or ones whose removal (asked
        for when their handles died) was lost with a worker that is gone."""
        if self.run_dir is not None:
            for stale in Path(self.run_dir, "checkpoints").glob(".best_candidate_*"):
                stale.unlink(missing_ok=True)

    @staticmethod
    def owns(handle: Any) -> bool:
        return isinstance(handle, BestFile)

    def fetch(self, handle: Any) -> Any:
        """The final best state: ``checkpoints/best.pt``, read only if a callback reads it."""
        best = Path(self.run_dir or ".") / "checkpoints" / "best.pt"
        return LazyState(best) if best.is_file() else None
