"""What happens to a trial whose workload failed or whose worker was lost (pure decisions).

Why: failures must cost as little as possible and never corrupt the run's record. A trial whose
worker dies (actor killed, out of memory, node removed) continues on a recreated or another worker
from the state its failed segment started from, so no iteration is trained or reported twice;
only when that state itself was lost with its node does it roll back to its latest checkpoint on
disk (re-run rows are not reported again). A trial whose user code raised or produced a NaN/inf is
marked ERROR with its traceback in ``trials/<trial_id>/error.txt``; the policy replaces it from a
donor at the next boundary. Both count against ``fault_tolerance.max_failures`` per trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pbtune.engines.base import ERROR, PAUSED, PENDING
from pbtune.engines.core.events import (
    AbandonSegments,
    CheckpointWritten,
    Command,
    Journal,
    Notify,
    Restore,
    SegmentLost,
    WriteError,
    lost_with,
)
from pbtune.engines.core.state import TrialState


def _error_text(t: TrialState, text: str) -> WriteError:
    return WriteError(t.trial_id, f"--- failure {t.record.failures} at iteration {t.iteration} "
                                  f"(config {t.config})\n{text.rstrip()}\n")


def trial_error(t: TrialState, error: str, *, perturbs: bool, max_failures: int,
                recovery: bool) -> list[Command]:
    """User code raised, or a metric or loss stopped being finite."""
    t.record.failures += 1
    t.status, t.record.error, t.worker = ERROR, error, None
    t.recoverable = perturbs and t.record.failures <= max_failures
    out: list[Command] = [_error_text(t, error)] if recovery else []
    out += [Journal({"event": "error", "trial": t.trial_id, "iteration": t.iteration,
                     "failures": t.record.failures, "recoverable": t.recoverable,
                     "message": error.splitlines()[0] if error else ""}, sync=True),
            Notify("on_trial_end", (t.record,))]
    return out


def worker_lost(t: TrialState, event: SegmentLost, trials: Mapping[str, TrialState],
                latest: Mapping[str, CheckpointWritten], *, max_failures: int,
                recovery: bool) -> list[Command]:
    """The segment's worker (or the state it was given) is gone: continue elsewhere.

    Its other live trials continue from their snapshots, or — states that stayed on the lost
    worker (:class:`~pbtune.engines.core.events.Held`) — from their latest checkpoints.
    """
    if not event.state_lost:
        for other in trials.values():  # its other live states are gone too
            if other is t:
                continue
            if other.worker == event.worker:
                other.worker = None
                if other.pending is None and other.snapshot is not None:
                    other.pending = Restore(other.snapshot)
            _forget_held(other, event.worker, latest.get(other.trial_id))
    t.record.failures += 1
    out: list[Command] = [Journal({
        "event": "worker_lost", "worker": event.worker, "trial": t.trial_id,
        "iteration": t.iteration, "failures": t.record.failures, "reason": event.reason,
        "replaced": event.replaced}, sync=True)]
    t.worker = None
    if t.record.failures > max_failures:
        t.status, t.recoverable = ERROR, False
        t.record.error = (f"lost its worker {t.record.failures} times (max_failures = "
                          f"{max_failures}); last: {event.reason}: {event.message}")
        if recovery:
            out.append(_error_text(t, t.record.error))
        out.append(Notify("on_trial_end", (t.record,)))
        return out
    t.status = PAUSED
    restore = _surviving(t.running_from, event.worker, t, latest.get(t.trial_id))
    if event.state_lost or (restore is None and t.iteration > 0):
        restore = from_disk(t, latest.get(t.trial_id))
    t.pending = restore
    return out


def _surviving(restore: Restore | None, worker: int, t: TrialState,
               latest: CheckpointWritten | None) -> Restore | None:
    """``restore`` without the states only the lost ``worker`` held: None (roll back to a
    checkpoint) when its state is one; when only its RNG's is (an exploit's target held
    there), the target's checkpoint at that iteration gives the RNG, else its own seed does."""
    if restore is None or lost_with(restore.state, worker):
        return None
    if lost_with(restore.rng_from, worker):
        same = latest is not None and latest.iteration == t.iteration and latest.include_rng
        return Restore(restore.state, restore.include_rng, latest.file if same else None)
    return restore


def _forget_held(t: TrialState, worker: int, latest: CheckpointWritten | None) -> None:
    """``worker`` is lost: ``t``'s states that only it held now come from disk.

    A pending restore naming one rolls the trial back to its latest checkpoint (see
    :func:`_surviving`); a state kept at a boundary (early release) becomes its checkpoint at
    that boundary if there is one, else nothing (the boundary's decisions then skip it as a
    donor).
    """
    if t.pending is not None:
        kept = _surviving(t.pending, worker, t, latest)
        t.pending = kept if kept is not None else from_disk(t, latest)
    if t.kept is not None and lost_with(t.kept.state, worker):
        on_disk = latest is not None and latest.iteration == t.kept.iteration and \
            latest.include_rng
        t.kept.state = latest.file if on_disk else None  # type: ignore[union-attr]


def abandon(trials: Mapping[str, TrialState], running: dict[int, Any]) -> list[Command]:
    """Give up segments still running a grace period past the time budget: stop their workers
    and put their trials back at the start of the segment (resume runs it again)."""
    workers = tuple(sorted(running))
    if not workers:
        return []
    out: list[Command] = [AbandonSegments(workers)]
    for w in workers:
        t = trials[running.pop(w).trial_id]
        t.status = PENDING if t.iteration == 0 else PAUSED
        t.worker, t.pending = None, t.running_from
        out.append(Journal({"event": "abandoned", "trial": t.trial_id, "worker": w,
                            "iteration": t.iteration, "reason": "time_budget"}, sync=True))
    return out


def from_disk(t: TrialState, latest: CheckpointWritten | None) -> Restore | None:
    """Roll ``t`` back to its latest checkpoint (or to iteration 0 when it has none)."""
    if latest is None:
        t.iteration, t.snapshot = 0, None
        return None
    t.iteration, t.config = latest.iteration, dict(latest.config)
    t.snapshot = latest.rng_file or latest.file
    return Restore(latest.file, latest.include_rng, latest.rng_file)
