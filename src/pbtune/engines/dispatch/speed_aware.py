"""``speed-aware``: earliest-finish-time list scheduling over measured speeds (pure; no Ray).

Why: ``affinity`` and ``fifo`` are work-conserving one worker at a time. On a heterogeneous
cluster that is not enough: PBT decides only when every live trial has reached the perturbation
boundary, so a generation lasts until its *last* segment ends, and a worker 3× slower that starts
the last segment delays the barrier by up to 3× a segment while the fast workers idle.
``speed-aware`` therefore plans the rest of the generation at once and minimises its makespan with
earliest-finish-time (EFT) list scheduling:

1. every worker's per-iteration time comes from its measured speed (iterations per compute-second,
   EMA); a worker not yet measured counts as fast as the fastest measured one (so it gets work and
   is measured); busy workers become free when their running segment should end;
2. runnable segments are placed longest first, then most promising first (best latest score), each
   on the worker that would *finish* it earliest (ties: the worker already holding the trial's
   state, then the faster, then the lower index) — so the most promising trials run on the fastest
   workers, and a fast worker that will be free soon takes work a straggler would otherwise start;
3. an idle worker starts the first segment the plan gives it; the plan is redone after every
   finished segment.

**The one exception to "no worker idles while a trial is runnable"**: an idle worker *declines*
when, in that plan, every runnable segment finishes earlier on some other worker (one that is busy
now and frees up soon enough). It cannot stall the run: with no segment running, the earliest
finish is always on an idle worker, so at least one starts. Before any worker has been measured,
``speed-aware`` falls back to ``affinity`` (no worker declines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pbtune.engines.dispatch.affinity import AffinityDispatcher
from pbtune.engines.dispatch.base import DISPATCHERS, Dispatcher, T, promise


@DISPATCHERS.register("speed-aware")
class SpeedAwareDispatcher(Dispatcher):
    """Starts what an EFT plan of all runnable segments gives the idle workers now."""

    local = False  # the plan covers every runnable segment

    def assign(self, idle: Sequence[int], runnable: Sequence[T],
               running: Mapping[int, tuple[float, int]], *, speeds: Mapping[int, float],
               mode: str, length: Callable[[T], int]) -> list[tuple[int, T]]:
        if not any(s > 0 for s in speeds.values()):
            return AffinityDispatcher().assign(idle, runnable, running, speeds=speeds, mode=mode,
                                               length=length)
        return earliest_finish(idle, runnable, running, speeds=speeds, mode=mode, length=length)


def earliest_finish(idle: Sequence[int], runnable: Sequence[T],
                    running: Mapping[int, tuple[float, int]], *, speeds: Mapping[int, float],
                    mode: str, length: Callable[[T], int]) -> list[tuple[int, T]]:
    """The EFT plan of all runnable segments; returns the segments idle workers start now.

    Needs at least one measured (positive) speed.
    """
    fastest = max(s for s in speeds.values() if s > 0)

    def seconds_per_iteration(worker: int) -> float:
        speed = speeds.get(worker, 0.0)
        return 1.0 / (speed if speed > 0 else fastest)

    free = {w: 0.0 for w in idle}  # s from now until the worker can start another segment
    for worker, (elapsed, iterations) in running.items():
        free[worker] = max(0.0, iterations * seconds_per_iteration(worker) - elapsed)
    order = sorted(runnable, key=lambda t: (-length(t), -promise(t, mode), t.trial_id))
    starts: dict[int, T] = {}
    for trial in order:
        def finish(worker: int, trial: T = trial) -> tuple[float, bool, float, int]:
            end = free[worker] + length(trial) * seconds_per_iteration(worker)
            # Rounded so float noise never beats the state-affinity and speed tie-breakers.
            return (round(end, 9), trial.worker != worker, seconds_per_iteration(worker), worker)

        best = min(free, key=finish)
        if best in idle and best not in starts:
            starts[best] = trial
        free[best] += length(trial) * seconds_per_iteration(best)
    return [(w, starts[w]) for w in idle if w in starts]
