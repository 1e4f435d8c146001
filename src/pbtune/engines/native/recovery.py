"""Fault tolerance for the native engine: checkpoint writing, resume cuts, restoring a run.

Why here: the driver loop should read as PBT logic. This module owns everything that makes a run
survive losing its driver: a background thread that fetches states from the object store and
writes them as verified checkpoints (so disk I/O never stalls dispatch), the assembly of *cuts* —
consistent resume points — and turning a cut back into trials on resume.

A cut at iteration C is assembled once every trial has passed C (or ended): it holds each trial's
record at C (config, seed, counters, status), the checkpoint of its state at C, the PBT RNG state
and the last perturbation boundary whose decisions were made. Segments end at multiples of
``checkpoint_interval`` and PBT decides only at barriers every trial has reached, so no decision
falls between a cut's trial states and its policy state: the cut is one consistent experiment.
The journal's ``cut`` line is written only after all its checkpoints are on disk (fsync'd).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from pathlib import Path
from typing import Any

import ray

from pbtune.engines.base import ERROR, PENDING, TERMINATED, Trial
from pbtune.store.checkpoints import DISK_ERRNOS, CheckpointStore, disk_error
from pbtune.store.journal import Journal

BEST_NAME = "best.pt"


def trial_record(trial: Trial) -> dict[str, Any]:
    """What resume needs of a trial (JSON-serialisable)."""
    score = trial.scores.get(trial.iteration)
    return {"trial_id": trial.trial_id, "config": dict(trial.config), "seed": trial.seed,
            "iteration": trial.iteration, "status": trial.status, "exploits": trial.exploits,
            "failures": trial.failures, "recoverable": trial.recoverable,
            "compute_s": round(trial.compute_s, 6), "recorded": trial.recorded,
            "score": score, "error": (trial.error or "").splitlines()[0] if trial.error else None}


class Recovery:
    """Checkpoints, cuts and the journal of one run directory.

    Args:
        run_dir: the run directory.
        journal: the run's open :class:`Journal`.
        checkpoint_interval: iterations between checkpoints (``checkpoint_interval``).
        keep: cuts whose checkpoints are kept (older ones are pruned; the newest per trial and
            ``best.pt`` are always kept).
    """

    def __init__(self, run_dir: Path, journal: Journal, checkpoint_interval: int,
                 keep: int = 2) -> None:
        self.run_dir = Path(run_dir)
        self.journal = journal
        self.store = CheckpointStore(self.run_dir)
        self.interval = checkpoint_interval
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._written: dict[tuple[str, int], dict[str, Any]] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._files: list[str] = []
        self._cut_paths: deque[set[str]] = deque(maxlen=keep)
        self._pending: dict[int, dict[str, dict[str, Any]]] = {}  # C → trial → record at C
        self._best: tuple[Any, dict[str, Any]] | None = None
        self._best_written: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._loop, name="pbtune-checkpoints", daemon=True)
        self._thread.start()

    # -- driver side -------------------------------------------------------------------------
    def check(self) -> None:
        """Raise the writer thread's disk error in the driver (stops the run, state kept)."""
        if self.error is not None:
            exc = self.error
            if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
                raise disk_error(exc, self.run_dir) from exc
            raise exc

    def segment_end(self, trial: Trial, trials: dict[str, Trial], final: bool) -> None:
        """After a trial's segment: checkpoint it at multiples of the interval and at its end."""
        it = trial.iteration
        if it == trial.ckpt_iter or not (final or it % self.interval == 0):
            return
        self._enqueue_checkpoint(trial, trial.snapshot, True)
        if it % self.interval == 0:
            self._pending.setdefault(it, {})[trial.trial_id] = trial_record(trial)

    def assemble(self, trials: dict[str, Trial], extra: dict[str, Any]) -> None:
        """Queue every cut whose trials have all passed it (call before perturbing)."""
        for c in sorted(self._pending):
            records = dict(self._pending[c])
            for tid, trial in trials.items():
                if tid in records:
                    continue
                if trial.status in (TERMINATED, ERROR) or (trial.status == PENDING
                                                           and trial.iteration == 0):
                    records[tid] = trial_record(trial)
                else:
                    return  # an earlier cut is incomplete: later ones are too
            del self._pending[c]
            self._queue.put(("cut", {"event": "cut", "iteration": c, **extra, "trials": records}))

    def final_cut(self, trials: dict[str, Trial], extra: dict[str, Any], final: bool) -> None:
        """Checkpoint every trial's current state and queue a cut of the quiescent population.

        Used at the end of a run and after Ctrl-C: nothing is running, so each trial's latest
        state (a pending exploit state, else its last snapshot) is consistent with the policy.
        """
        self._pending.clear()
        records = {}
        for tid, trial in trials.items():
            state, rng = ((trial.pending_state, trial.include_rng)
                          if trial.pending_state is not None else (trial.snapshot, True))
            if trial.status != ERROR and state is not None and trial.ckpt_iter != trial.iteration:
                self._enqueue_checkpoint(trial, state, rng)
            records[tid] = {**trial_record(trial), "include_rng": rng}
        self._queue.put(("cut", {"event": "cut", "iteration": max(
            (t.iteration for t in trials.values()), default=0), "final": final, **extra,
            "trials": records}))

    def best(self, ref: Any, meta: dict[str, Any]) -> None:
        """Persist the best result's state (coalesced: only the newest pending one is written)."""
        self._best = (ref, dict(meta))
        self._queue.put(("best",))

    def drain(self) -> None:
        """Wait until every queued checkpoint and cut is on disk."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.journal.close()

    def seed(self, cut: dict[str, Any]) -> None:
        """On resume: the cut's checkpoints are this session's latest (kept, then pruned)."""
        for tid, rec in cut["trials"].items():
            if rec.get("checkpoint"):
                self._latest[tid] = {**rec["checkpoint"], "config": rec["config"],
                                     "include_rng": rec.get("include_rng", True)}
                self._files.append(rec["checkpoint"]["path"])
        self._cut_paths.append({r["path"] for r in self._latest.values()})

    def _enqueue_checkpoint(self, trial: Trial, ref: Any, include_rng: bool) -> None:
        trial.ckpt_iter = trial.iteration
        self._queue.put(("ckpt", trial.trial_id, trial.iteration, ref, include_rng,
                         dict(trial.config)))

    # -- writer thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self.error is None:
                    getattr(self, f"_do_{job[0]}")(*job[1:])
            except BaseException as exc:  # reported to the driver by check()
                self.error = exc
            finally:
                self._queue.task_done()

    def _do_ckpt(self, tid: str, it: int, ref: Any, include_rng: bool, config: dict) -> None:
        try:
            state = ray.get(ref)
        except ray.exceptions.RayError as exc:  # state lost with its node: no checkpoint
            self.journal.write({"event": "checkpoint_failed", "trial": tid, "iteration": it,
                                "reason": type(exc).__name__})
            return
        rec = {**self.store.save(tid, it, state), "include_rng": include_rng, "config": config}
        self._written[(tid, it)] = self._latest[tid] = rec
        self._files.append(rec["path"])
        self.journal.write({"event": "checkpoint", "trial": tid, **rec})

    def _do_cut(self, cut: dict[str, Any]) -> None:
        for tid, rec in cut["trials"].items():
            if rec["status"] == PENDING and rec["iteration"] == 0:
                rec["checkpoint"] = None
                continue
            ckpt = self._written.pop((tid, rec["iteration"]), None)
            latest = self._latest.get(tid)
            ended = rec["status"] in (TERMINATED, ERROR)
            if ckpt is None and latest is not None and (
                    latest["iteration"] == rec["iteration"] or ended):
                ckpt = latest
            if ckpt is None:  # its state was lost before it reached the disk: no cut here
                self.journal.write({"event": "cut_skipped", "iteration": cut["iteration"],
                                    "trial": tid})
                return
            rec["checkpoint"] = {k: ckpt[k] for k in ("path", "sha256", "bytes", "iteration")}
            rec.setdefault("include_rng", ckpt["include_rng"])
        self.journal.write(cut, sync=True)
        self._cut_paths.append({r["checkpoint"]["path"] for r in cut["trials"].values()
                                if r.get("checkpoint")})
        keep = set().union(*self._cut_paths) | {r["path"] for r in self._latest.values()}
        self._files = self.store.prune(keep, self._files)

    def _do_best(self) -> None:
        if self._best is None or self._best[1] == self._best_written:
            return
        ref, meta = self._best
        rec = self.store.save(meta["trial_id"], meta["iteration"], ray.get(ref), name=BEST_NAME)
        self._best_written = meta
        self.journal.write({"event": "best", **meta, **rec})


def restore_trials(cut: dict[str, Any], store: CheckpointStore) -> dict[str, Trial]:
    """Trials as recorded in ``cut``, each with its checkpoint loaded (put in the object store)."""
    from pbtune.engines.base import PAUSED

    trials = {}
    for tid, rec in sorted(cut["trials"].items()):
        status = rec["status"]
        if status not in (TERMINATED, ERROR):
            status = PENDING if rec["iteration"] == 0 else PAUSED
        trial = Trial(trial_id=tid, config=dict(rec["config"]), seed=int(rec["seed"]),
                      iteration=int(rec["iteration"]), status=status,
                      exploits=int(rec.get("exploits", 0)), failures=int(rec.get("failures", 0)),
                      recoverable=bool(rec.get("recoverable", False)),
                      compute_s=float(rec.get("compute_s", 0.0)), error=rec.get("error"))
        trial.recorded = trial.iteration if status in (PAUSED, PENDING) else int(
            rec.get("recorded", trial.iteration))
        if rec.get("score") is not None:
            trial.scores[trial.iteration] = float(rec["score"])
        if status in (PAUSED,) and rec.get("checkpoint"):
            state = store.load(rec["checkpoint"])
            trial.pending_state = trial.snapshot = ray.put(state)
            trial.include_rng = bool(rec.get("include_rng", True))
            trial.ckpt_iter = trial.iteration
        trials[tid] = trial
    return trials
