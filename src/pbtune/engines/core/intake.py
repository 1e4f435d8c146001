"""Taking in a finished segment's rows: what they do to the trial's record (pure functions).

Why apart from the coordinator: reporting each iteration once (a re-run after a roll-back is not
reported again), keeping only the scores ranking still needs, and the trial's next status are
bookkeeping of one trial; the coordinator keeps the decisions that involve the population (the
best result, stopping, cuts).
"""

from __future__ import annotations

from typing import Any

from pbtune.engines.base import PAUSED, TERMINATED, reached
from pbtune.engines.core.events import Command, Notify, SegmentFinished
from pbtune.engines.core.settings import RunSettings
from pbtune.engines.core.state import TrialState


def report_rows(t: TrialState, ev: SegmentFinished, where: dict[str, str],
                s: RunSettings) -> tuple[list[Command], bool]:
    """Record the segment's scores and report its new rows; ``(commands, threshold reached)``.

    ``where`` is the worker's columns (node, worker shape, precision), added to every row.
    """
    out: list[Command] = []
    hit = False
    for row in ev.result["rows"]:
        value = float(row[s.metric])
        t.scores[row["iteration"]] = value
        if row["iteration"] > t.recorded:  # a re-run after a rollback is not re-reported
            row = {**row, "trial_id": t.trial_id, "config": dict(t.config), "worker": ev.worker,
                   **where}
            t.recorded, t.record.last_result = row["iteration"], row
            t.record.results += 1
            out.append(Notify("on_result", (t.record, row)))
            artifacts = (ev.result.get("artifacts") or {}).get(row["iteration"])
            if artifacts:  # images of this iteration's model (a GAN's samples)
                out.append(Notify("on_artifacts", (t.record, row, artifacts)))
        hit = hit or reached(value, s.threshold, s.mode)
    t.record.compute_s += ev.result["compute_s"]
    return out, hit


def best_candidate(t: TrialState, result: dict[str, Any]) -> dict[str, Any] | None:
    """The segment's best result as a summary ``best`` entry, if the worker returned one."""
    it = result.get("best_iteration")
    if it is None:
        return None
    return {"trial_id": t.trial_id, "metric": t.scores[it], "config": dict(t.config),
            "iteration": it}


def advance(t: TrialState, ev: SegmentFinished, s: RunSettings,
            last_barrier: int) -> list[Command]:
    """A segment that ended well: the trial's new iteration, snapshot and status."""
    t.iteration, t.snapshot = ev.result["iteration"], ev.snapshot
    if len(t.scores) > 2:  # ranking needs boundary scores only: keep memory flat
        t.scores = {k: v for k, v in t.scores.items() if k == t.iteration or (
            k >= last_barrier and k % s.interval == 0)}
    if t.iteration >= s.max_iter:
        t.status = TERMINATED
        return [Notify("on_trial_end", (t.record,))]
    t.status = PAUSED
    return []
