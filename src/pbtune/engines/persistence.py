"""Writing what the coordinator asks to persist: checkpoints, cuts, the best state, error files.

Why a thread of its own: fetching a state from wherever the executor keeps it and writing it as a
verified file must never stall dispatch, so the driver queues :class:`Checkpoint`,
:class:`WriteCut` and :class:`SaveBest` commands here and goes on. A cut's journal line is
written only after all its checkpoints are on disk (fsync'd); files no retained cut references
are pruned. Every checkpoint written is reported back as a
:class:`~pbtune.engines.core.events.CheckpointWritten` event (the roll-back point the coordinator
uses when a trial's state is lost). No Ray here: the executor passes ``fetch`` (``ray.get`` for
the Ray executor; the identity for the simulated one).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbtune.engines.base import ERROR, PENDING, TERMINATED
from pbtune.engines.core.events import (
    Checkpoint,
    CheckpointWritten,
    OnDisk,
    SaveBest,
    WriteCut,
    WriteError,
)
from pbtune.store.checkpoints import DISK_ERRNOS, CheckpointStore, disk_error
from pbtune.store.journal import Journal
from pbtune.store.lock import lock_run

BEST_NAME = "best.pt"
FIELDS = ("path", "sha256", "bytes", "iteration")  # a checkpoint's reference in a cut


class Persistence:
    """The run directory's writer.

    Args:
        run_dir: the run directory.
        journal: the run's open :class:`~pbtune.store.journal.Journal`.
        fetch: handle → state (may raise ``lost``: the state went with its node).
        lost: the exception types ``fetch`` raises for a state that is gone.
        keep: cuts whose checkpoints are kept (the newest per trial and ``best.pt`` always are).
        start_write: ``(handle, path)`` → a callable waiting for ``{"sha256", "bytes"}`` when the
            worker holding the state writes it itself (the large-state path), else None. Called
            when the command is submitted, so the copy is taken before the trial trains on.
        discard: drops a handle ``start_write`` took that will not be written after all (a best
            candidate a newer best replaced).
    """

    def __init__(self, run_dir: Path, journal: Journal, fetch: Callable[[Any], Any],
                 lost: tuple[type[BaseException], ...] = (), keep: int = 2,
                 start_write: Callable[[Any, Path], Any] | None = None,
                 discard: Callable[[Any], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.lock = lock_run(self.run_dir)  # one writer per run directory
        self.journal = journal
        self.store = CheckpointStore(self.run_dir)
        self.fetch, self.lost = fetch, lost
        self.start_write = start_write or (lambda handle, path: None)
        self.discard = discard or (lambda handle: None)
        self.error: BaseException | None = None
        self.written: queue.Queue[CheckpointWritten] = queue.Queue()  # for the coordinator
        self._queue: queue.Queue[Any] = queue.Queue()
        self._by_iter: dict[tuple[str, int], dict[str, Any]] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._files: list[str] = []
        self._cut_paths: deque[set[str]] = deque(maxlen=keep)
        self._best: SaveBest | None = None
        self._best_written: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._loop, name="pbtune-checkpoints", daemon=True)
        self._thread.start()

    # -- driver side -----------------------------------------------------------------------------
    def submit(self, command: Checkpoint | WriteCut | SaveBest | WriteError) -> None:
        if isinstance(command, WriteError):  # small and rare: written at once
            path = self.run_dir / "trials" / command.trial_id / "error.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(command.text)
            return
        write = None
        if isinstance(command, Checkpoint):
            write = self.start_write(command.state, self._path(command))
        elif isinstance(command, SaveBest):  # coalesced: only the newest pending one is written
            self._best = command
            write = self.start_write(command.state, self.store.root / BEST_NAME)
        self._queue.put((command, write))

    def check(self) -> None:
        """Raise the writer's disk error in the driver (stops the run, state kept)."""
        if self.error is not None:
            exc = self.error
            if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
                raise disk_error(exc, self.run_dir) from exc
            raise exc

    def drain(self) -> None:
        """Wait until every queued checkpoint and cut is on disk."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.journal.close()
        self.lock.release()

    def seed(self, cut: dict[str, Any]) -> None:
        """On resume: the cut's checkpoints are this session's latest (kept, then pruned)."""
        for tid, rec in cut["trials"].items():
            if rec.get("checkpoint"):
                self._latest[tid] = {**rec["checkpoint"], "config": rec["config"],
                                     "include_rng": rec.get("include_rng", True)}
                self._files.append(rec["checkpoint"]["path"])
        self._cut_paths.append({r["path"] for r in self._latest.values()})

    # -- writer thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                command, write = job
                if self.error is None:
                    {Checkpoint: self._checkpoint, WriteCut: self._cut,
                     SaveBest: self._save_best}[type(command)](command, write)
                elif write is not None:
                    self.discard(command.state)
            except BaseException as exc:  # reported to the driver by check()
                self.error = exc
            finally:
                self._queue.task_done()

    def _path(self, c: Checkpoint) -> Path:
        """Where a checkpoint goes (under ``run_dir``, as the run directory was given)."""
        if c.role == "exploit":  # kept apart from the trial's own state at that iteration
            return self.store.root / c.trial_id / f"iter_{c.iteration:06d}_exploit.pt"
        return self.store.path_for(c.trial_id, c.iteration)

    def _write(self, state: Any, write: Any, path: Path, trial_id: str,
               iteration: int) -> dict[str, Any]:
        """Write a state to ``path`` (here, or by the worker holding it) → its record."""
        if write is None:
            return self.store.save(trial_id, iteration, self.fetch(state),
                                   name=str(path.relative_to(self.store.root)))
        rec = write()
        size = path.stat().st_size if path.is_file() else -1
        if size != rec["bytes"]:  # the worker wrote it where this machine cannot see it
            from pbtune.errors import UserError

            raise UserError(
                f"a worker wrote {path} but this machine sees {'no file' if size < 0 else size}"
                " there: states kept on workers (resources.state_on_worker) are written by "
                "them, so the run directory must be on a filesystem every node shares; use "
                "--results-dir on shared storage, or resources.state_on_worker: never")
        return {"path": str(path.relative_to(self.run_dir)), "iteration": iteration, **rec}

    def _checkpoint(self, c: Checkpoint, write: Any) -> None:
        try:
            rec = self._write(c.state, write, self._path(c), c.trial_id,
                              c.iteration)
        except self.lost as exc:  # state lost with its node: no checkpoint
            self.journal.write({"event": "checkpoint_failed", "trial": c.trial_id,
                                "iteration": c.iteration, "reason": type(exc).__name__})
            return
        if c.role == "exploit":
            rec = {**rec, "include_rng": False, "config": c.config}
            self._by_iter[(c.trial_id, c.iteration, "exploit")] = rec
            self._files.append(rec["path"])
            self.journal.write({"event": "checkpoint", "trial": c.trial_id, "role": "exploit",
                                **rec})
            return
        rec = {**rec, "include_rng": c.include_rng, "config": c.config}
        self._by_iter[(c.trial_id, c.iteration)] = self._latest[c.trial_id] = rec
        self._files.append(rec["path"])
        self.journal.write({"event": "checkpoint", "trial": c.trial_id, **rec})
        self.written.put(CheckpointWritten(c.trial_id, c.iteration, OnDisk.of(rec),
                                           c.include_rng, dict(c.config)))

    def _cut(self, job: WriteCut, _write: Any = None) -> None:
        cut = job.cut
        for tid, rec in cut["trials"].items():
            if rec["status"] == PENDING and rec["iteration"] == 0:
                rec["checkpoint"] = None
                continue
            ckpt = self._by_iter.pop((tid, rec["iteration"]), None)
            latest = self._latest.get(tid)
            ended = rec["status"] in (TERMINATED, ERROR)
            if ckpt is None and latest is not None and (
                    latest["iteration"] == rec["iteration"] or ended):
                ckpt = latest
            exploit = self._by_iter.pop((tid, rec["iteration"], "exploit"), None)
            if exploit is not None and rec.get("include_rng") is False:
                if ckpt is not None:  # the trial's own state there: its RNG
                    rec["rng_checkpoint"] = {k: ckpt[k] for k in FIELDS}
                ckpt = exploit
            if ckpt is None:  # its state was lost before it reached the disk: no cut here
                self.journal.write({"event": "cut_skipped", "iteration": cut["iteration"],
                                    "trial": tid})
                return
            rec["checkpoint"] = {k: ckpt[k] for k in FIELDS}
            rec.setdefault("include_rng", ckpt["include_rng"])
        self.journal.write(cut, sync=True)
        for key in [k for k in self._by_iter if k[1] <= cut["iteration"]]:
            del self._by_iter[key]  # no later cut can take these (cuts come in order)
        self._cut_paths.append({r[key]["path"] for r in cut["trials"].values()
                                for key in ("checkpoint", "rng_checkpoint") if r.get(key)})
        # Kept: the retained cuts, each trial's newest checkpoint, and every checkpoint no cut
        # has taken yet (a trial released early checkpoints iterations whose cuts come later).
        keep = set().union(*self._cut_paths) | {r["path"] for r in self._latest.values()} | {
            r["path"] for r in self._by_iter.values()}
        self._files = self.store.prune(keep, self._files)

    def _save_best(self, job: SaveBest, write: Any) -> None:
        best = self._best
        if best is None or job is not best or best.meta == self._best_written:
            if write is not None:  # a newer best replaced it before it was written
                self.discard(job.state)
            return
        try:
            rec = self._write(best.state, write, self.store.root / BEST_NAME,
                              best.meta["trial_id"], best.meta["iteration"])
        except self.lost as exc:  # gone with its node: the next best is written instead
            self.journal.write({"event": "best_failed", **best.meta,
                                "reason": type(exc).__name__})
            return
        self._best_written = best.meta
        self.journal.write({"event": "best", **best.meta, **rec})
