"""``fifo``: the runnable trial that has waited longest, wherever its state is (pure; no Ray).

Why: a simple, predictable baseline to compare the other dispatchers against; it ignores where
state lives and how fast workers are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pbtune.engines.dispatch.base import DISPATCHERS, Dispatcher, T, one_at_a_time, wait_key


@DISPATCHERS.register("fifo")
class FifoDispatcher(Dispatcher):
    """Each idle worker in turn takes the trial with the least progress (then the lowest id)."""

    local = True  # the longest-waiting of each holder is all it ever takes

    def assign(self, idle: Sequence[int], runnable: Sequence[T],
               running: Mapping[int, tuple[float, int]], *, speeds: Mapping[int, float],
               mode: str, length: Callable[[T], int]) -> list[tuple[int, T]]:
        return one_at_a_time(idle, runnable, running,
                             lambda worker, left, busy: min(left, key=wait_key))
