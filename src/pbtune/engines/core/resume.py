"""A resume point: the population as a journal cut recorded it (pure; files are read elsewhere).

Why: ``pbtune resume`` rebuilds the experiment from the newest verifiable cut — every trial's
record and checkpoint, the policy's state, the last decided boundary — and from the result files
rolled back to it (rows kept per trial, the best result, the exploit count). Turning that into
coordinator state is pure bookkeeping; the checkpoints are referenced as :class:`OnDisk` handles
that the executor loads when a trial first needs its state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pbtune.engines.base import ERROR, PAUSED, PENDING, TERMINATED, Trial
from pbtune.engines.core.events import CheckpointWritten, Handle, OnDisk, Restore
from pbtune.engines.core.state import TrialState


@dataclass
class ResumePoint:
    """Everything a coordinator continues from (see :func:`from_cut`)."""

    trials: list[TrialState]
    cut_iteration: int
    last_barrier: int
    exploits: int
    best: dict[str, Any] | None
    best_state: Handle = None
    policy_state: dict[str, Any] | None = None
    latest: dict[str, CheckpointWritten] = field(default_factory=dict)


def from_cut(cut: dict[str, Any], counts: dict[str, int], best: dict[str, Any] | None,
             exploits: int, best_state: Handle = None) -> ResumePoint:
    """The resume point of a journal ``cut``.

    Args:
        cut: the journal's cut event.
        counts: rows kept per trial in the rolled-back ``trials.csv``.
        best: the best result in the rolled-back ``trials.csv``.
        exploits: rows kept in the rolled-back ``pbt_global.txt``.
        best_state: a handle to the best result's state, when its file still matches ``best``.
    """
    trials, latest = [], {}
    for tid, rec in sorted(cut["trials"].items()):
        status = rec["status"]
        if status not in (TERMINATED, ERROR):
            status = PENDING if rec["iteration"] == 0 else PAUSED
        record = Trial(trial_id=tid, config=dict(rec["config"]), seed=int(rec["seed"]),
                       iteration=int(rec["iteration"]), status=status,
                       exploits=int(rec.get("exploits", 0)), failures=int(rec.get("failures", 0)),
                       compute_s=float(rec.get("compute_s", 0.0)), error=rec.get("error"),
                       results=counts.get(tid, 0))
        t = TrialState(record, recoverable=bool(rec.get("recoverable", False)))
        t.recorded = t.iteration if status in (PAUSED, PENDING) else int(
            rec.get("recorded", t.iteration))
        if rec.get("score") is not None:
            t.scores[t.iteration] = float(rec["score"])
        ckpt, own = rec.get("checkpoint"), rec.get("rng_checkpoint")
        rng_file = OnDisk.of(own) if own else None
        if ckpt:
            latest[tid] = CheckpointWritten(tid, int(ckpt["iteration"]), OnDisk.of(ckpt),
                                            bool(rec.get("include_rng", True)),
                                            dict(rec["config"]), rng_file)
        if status == PAUSED and ckpt:
            # An exploit not run yet: the donor's state, the trial's own RNG (its own file).
            t.snapshot = rng_file or OnDisk.of(ckpt)
            t.pending = Restore(OnDisk.of(ckpt), bool(rec.get("include_rng", True)), rng_file)
            t.ckpt_iter = t.iteration
        trials.append(t)
    return ResumePoint(trials=trials, cut_iteration=int(cut["iteration"]),
                       last_barrier=int(cut.get("last_barrier", 0)), exploits=exploits,
                       best=best, best_state=best_state, policy_state=cut.get("policy_state"),
                       latest=latest)
