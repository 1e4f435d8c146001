"""``affinity``: keep live state where it is (the default; pure, no Ray).

Why: on homogeneous nodes the only avoidable cost is moving a trial's state between workers, so a
worker first continues a trial whose state it already holds, then starts a new trial, then takes
a trial held by an idle worker, and only then one held by a busy worker (that move has to wait
for the holder to finish its segment). In the steady state no state moves at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pbtune.engines.dispatch.base import DISPATCHERS, Dispatcher, T, one_at_a_time, wait_key


def _tier(trial: T, worker: int, busy: set[int]) -> int:
    """0: ``worker`` holds the state; 1: nobody does; 2: an idle worker does; 3: a busy one."""
    if trial.worker == worker:
        return 0
    if trial.worker is None:
        return 1
    return 2 if trial.worker not in busy else 3


@DISPATCHERS.register("affinity")
class AffinityDispatcher(Dispatcher):
    """Each idle worker in turn takes the trial cheapest to run there, then the longest waiting."""

    local = True  # the longest-waiting of each holder is all it ever takes

    def assign(self, idle: Sequence[int], runnable: Sequence[T],
               running: Mapping[int, tuple[float, int]], *, speeds: Mapping[int, float],
               mode: str, length: Callable[[T], int]) -> list[tuple[int, T]]:
        def choose(worker: int, left: list[T], busy: set[int]) -> T:
            return min(left, key=lambda t: (_tier(t, worker, busy), *wait_key(t)))

        return one_at_a_time(idle, runnable, running, choose)
