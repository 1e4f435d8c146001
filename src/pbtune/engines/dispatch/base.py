"""The dispatcher interface, the shared helpers, and the dispatcher registry (pure; no Ray).

Why a plug-in: which idle worker starts which runnable trial decides how often live state moves
between workers and how well fast workers are used, and the right answer depends on the cluster
(homogeneous nodes want affinity, mixed speeds want a plan). Behind one small interface the
policies are interchangeable by the name a config gives (``scheduling:``), and adding one is one
module plus its registration::

    @DISPATCHERS.register("my-dispatcher")
    class MyDispatcher(Dispatcher):
        def assign(self, idle, runnable, running, *, speeds, mode, length): ...

plus its module in ``DISPATCHERS``' lazy table (so ``scheduling: my-dispatcher`` finds it).
Dispatchers are pure functions of their arguments: no Ray, no clock, no randomness, so the engine's
choices are reproducible and testable without a cluster.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Protocol, TypeVar

from pbtune.registry import Registry


class Runnable(Protocol):
    """What a dispatcher reads of a trial; the engine's own trial record has these attributes.

    Typed structurally so that dispatchers never depend on an engine's private trial class.

    Attributes:
        trial_id: stable id (``t000``, ...); the last tie-breaker everywhere.
        iteration: training iterations completed (how long the trial has waited, in effect).
        worker: the worker holding the trial's live state, or None (a new or moved trial).
        scores: iteration → raw metric value; the latest one says how promising the trial is.
    """

    # Read-only properties so that frozen records and plain attributes both satisfy it.
    @property
    def trial_id(self) -> str: ...

    @property
    def iteration(self) -> int: ...

    @property
    def worker(self) -> int | None: ...

    @property
    def scores(self) -> Mapping[int, float]: ...


T = TypeVar("T", bound=Runnable)


def wait_key(trial: Runnable) -> tuple[int, str]:
    """Sort key for "waited longest first": the least progress, then the id (deterministic)."""
    return (trial.iteration, trial.trial_id)


def promise(trial: Runnable, mode: str) -> float:
    """The trial's latest score oriented so that larger is better; -inf if none or not finite.

    Why: a trial that has not reported yet, or whose metric blew up, must rank last instead of
    poisoning comparisons with NaN.
    """
    if not trial.scores:
        return -math.inf
    value = trial.scores[max(trial.scores)]
    if not math.isfinite(value):
        return -math.inf
    return value if mode == "max" else -value


def one_at_a_time(idle: Sequence[int], runnable: Sequence[T], running: Mapping[int, object],
                  choose: Callable[[int, list[T], set[int]], T]) -> list[tuple[int, T]]:
    """Work-conserving greedy: each idle worker in turn takes ``choose(worker, left, busy)``.

    Why shared: ``affinity`` and ``fifo`` differ only in which trial one worker prefers. A worker
    given a trial counts as busy for the workers after it (a trial it holds then waits for it).
    """
    out: list[tuple[int, T]] = []
    left, busy = list(runnable), set(running)
    for worker in idle:
        if not left:
            break
        trial = choose(worker, left, busy)
        left.remove(trial)
        busy.add(worker)
        out.append((worker, trial))
    return out


class Dispatcher(ABC):
    """Decides which idle workers start which runnable trials now.

    The engine calls :meth:`assign` whenever a worker frees up or a trial becomes runnable, and
    again after every finished segment, so a dispatcher plans from scratch each time and keeps no
    state. Contract:

    - only workers in ``idle`` get work, each at most once, and each trial is started at most once;
    - **work conservation**: while a trial is runnable an idle worker takes one. A dispatcher may
      leave an idle worker without work only because a *busy* worker will finish that work
      earlier (``speed-aware`` does); with nothing in ``running`` at least one trial must start
      whenever ``idle`` and ``runnable`` are both non-empty, or the run would stall;
    - the answer is a deterministic function of the arguments (order included).
    """

    name: ClassVar[str] = ""
    #: True when the choice for a worker only ever takes, from each holder's runnable trials
    #: (each worker's, and the unheld ones), its longest-waiting (``affinity``, ``fifo``): the
    #: engine then passes just those, so a dispatch costs the same with 20 or 20,000 trials.
    #: False (the safe default): every runnable trial is passed.
    local: ClassVar[bool] = False

    @abstractmethod
    def assign(self, idle: Sequence[int], runnable: Sequence[T],
               running: Mapping[int, tuple[float, int]], *, speeds: Mapping[int, float],
               mode: str, length: Callable[[T], int]) -> list[tuple[int, T]]:
        """``(worker, trial)`` pairs to start now, in ``idle`` order.

        Args:
            idle: idle live workers, fastest first.
            runnable: trials that may run now (below their limit, not running, not finished).
            running: busy worker → (seconds its current segment has run, iterations in that
                segment).
            speeds: worker → measured throughput in iterations per compute-second (an EMA); a
                worker absent or at 0 has not been measured yet.
            mode: ``"max"`` or ``"min"``, to read "most promising" from scores.
            length: iterations the trial's next segment has (up to the barrier), at least 1.
        """


DISPATCHERS: Registry[Dispatcher] = Registry("dispatcher", lazy={
    "affinity": "pbtune.engines.dispatch.affinity",
    "fifo": "pbtune.engines.dispatch.fifo",
    "speed-aware": "pbtune.engines.dispatch.speed_aware",
})


def create_dispatcher(name: str) -> Dispatcher:
    """The dispatcher registered as ``name``; an unknown name lists the valid ones."""
    return DISPATCHERS.create(name)
