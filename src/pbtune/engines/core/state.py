"""The coordinator's per-trial state: the public record plus what only the engine needs.

Why two layers: results writers, the status table and replay see :class:`~pbtune.engines.base.Trial`
(id, status, config, iteration, metrics, lineage); the state handles, the boundary kept for early
release and the checkpoint bookkeeping are the coordinator's business and live here, in named
fields rather than positional tuples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pbtune.engines.base import Trial
from pbtune.engines.core.events import Handle, Restore


@dataclass
class Kept:
    """A trial that went on past ``iteration`` before that boundary's decisions (early release):
    its state there (the donor state should it be copied) and its counters there (to rewind it
    on Ctrl-C)."""

    iteration: int
    state: Handle
    compute_s: float  # s
    failures: int


@dataclass
class Running:
    """A segment in flight on a worker."""

    trial_id: str
    started_s: float  # s since the run started
    iterations: int  # iterations the segment was asked for


@dataclass
class TrialState:
    """One trial as the coordinator tracks it.

    Attributes:
        record: the public record (shared with callbacks; updated in place).
        scores: iteration → metric; only the boundary scores ranking still needs are kept.
        snapshot: the state at the trial's last segment end (recovery point, donor state).
        pending: what the next segment starts from (exploit, move, recovery), or None.
        running_from: what the running segment started from (re-run if its worker is lost).
        recoverable: an errored trial the policy may still replace at the next boundary.
        recorded: highest iteration whose row was reported (re-runs are not reported again).
        ckpt_iter: iteration of the latest checkpoint asked for (-1: none).
        kept: set while the trial is past a boundary whose decisions are not made yet.
    """

    record: Trial
    scores: dict[int, float] = field(default_factory=dict)
    snapshot: Handle = None
    pending: Restore | None = None
    running_from: Restore | None = None
    recoverable: bool = False
    recorded: int = 0
    ckpt_iter: int = -1
    kept: Kept | None = None
    index: Any = field(default=None, repr=False, compare=False)  # told of every change below

    # The record's fields the coordinator and the dispatchers read and write all the time.
    @property
    def trial_id(self) -> str:
        return self.record.trial_id

    @property
    def iteration(self) -> int:
        return self.record.iteration

    @iteration.setter
    def iteration(self, value: int) -> None:
        self.record.iteration = value
        if self.index is not None:
            self.index.touch(self)

    @property
    def status(self) -> str:
        return self.record.status

    @status.setter
    def status(self, value: str) -> None:
        self.record.status = value
        if self.index is not None:
            self.index.touch(self)

    @property
    def worker(self) -> int | None:
        """The worker holding the trial's live state (running it, or the last to run it)."""
        return self.record.worker

    @worker.setter
    def worker(self, value: int | None) -> None:
        self.record.worker = value
        if self.index is not None:
            self.index.touch(self)

    @property
    def config(self) -> dict[str, Any]:
        return self.record.config

    @config.setter
    def config(self, value: dict[str, Any]) -> None:
        self.record.config = value

    @property
    def compute_s(self) -> float:
        return self.record.compute_s

    @property
    def results(self) -> int:
        return self.record.results

    def resume_point(self) -> Restore | None:
        """What a segment starting now begins from: the pending state, else the snapshot."""
        if self.pending is not None:
            return self.pending
        return Restore(self.snapshot) if self.snapshot is not None else None


def trial_record(t: TrialState) -> dict[str, Any]:
    """What resume needs of a trial (JSON-serialisable; a journal cut's per-trial entry)."""
    r = t.record
    return {"trial_id": r.trial_id, "config": dict(r.config), "seed": r.seed,
            "iteration": r.iteration, "status": r.status, "exploits": r.exploits,
            "failures": r.failures, "recoverable": t.recoverable,
            "compute_s": round(r.compute_s, 6), "recorded": t.recorded,
            "score": t.scores.get(r.iteration),
            "error": (r.error or "").splitlines()[0] if r.error else None}
