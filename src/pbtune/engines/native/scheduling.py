"""Which runnable trial an idle worker takes next (pure; no Ray).

Why: the driver is work-conserving — an idle worker always takes a runnable trial if one exists —
but *which* one decides how often state has to move between workers and whether fast workers are
used well. Policies:

- ``affinity``: a worker first continues trials whose live state it already holds, then starts a
  new trial, then takes a trial held by an idle worker, and only then one held by a busy worker
  (that move has to wait for the holder to finish its segment).
- ``fifo``: the runnable trial that has waited longest (lowest iteration, then id), wherever its
  state lives.
- ``speed-aware``: the driver plans the rest of the generation with earliest-finish-time list
  scheduling over measured worker speeds (:mod:`~pbtune.engines.native.dispatch`): the most
  promising trials go to the fastest workers, a fast worker that frees up soon takes work a
  straggler would otherwise start, and a slow worker may decline a segment a faster one will finish
  earlier. :func:`choose_trial` below is its one-worker-at-a-time form (fastest gets the most
  promising), kept for callers that place one worker at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pbtune.engines.base import Trial

POLICIES = ("affinity", "fifo", "speed-aware")


def _wait_key(trial: Trial) -> tuple[int, str]:
    return (trial.iteration, trial.trial_id)


def _score(trial: Trial, mode: str) -> float:
    if not trial.scores:
        return -math.inf
    value = trial.scores[max(trial.scores)]
    if not math.isfinite(value):
        return -math.inf
    return value if mode == "max" else -value


def choose_trial(
    worker: int,
    runnable: Sequence[Trial],
    busy_workers: set[int],
    *,
    policy: str = "affinity",
    speeds: Mapping[int, float] | None = None,
    mode: str = "max",
) -> Trial | None:
    """Pick the trial ``worker`` should run next, or None if nothing is runnable.

    Args:
        worker: the idle worker's index.
        runnable: trials that may run now (not running, not finished, below the barrier).
        busy_workers: indices of workers currently running a segment.
        policy: one of :data:`POLICIES`.
        speeds: worker index → measured throughput (iterations/s); used by ``speed-aware``.
        mode: ``"max"`` or ``"min"``, to read "most promising" from scores.
    """
    if not runnable:
        return None
    if policy == "fifo":
        return min(runnable, key=_wait_key)
    if policy not in POLICIES:
        raise ValueError(f"unknown scheduling policy {policy!r}; valid: {', '.join(POLICIES)}")

    def tier(trial: Trial) -> int:
        if trial.worker == worker:
            return 0
        if trial.worker is None:
            return 1
        return 2 if trial.worker not in busy_workers else 3

    if policy == "affinity" or not speeds or len(speeds) < 2:
        return min(runnable, key=lambda t: (tier(t), *_wait_key(t)))

    # speed-aware: rank this worker among the known speeds; the fastest take the best trials.
    ordered = sorted(speeds, key=lambda w: -speeds[w])
    rank = ordered.index(worker) if worker in ordered else len(ordered) - 1
    fraction = rank / max(1, len(ordered) - 1)  # 0 = fastest, 1 = slowest
    # Trials this worker can take without waiting (its own, new, or held by an idle worker).
    cheap = [t for t in runnable if tier(t) <= 2] or list(runnable)
    by_promise = sorted(cheap, key=lambda t: (-_score(t, mode), t.trial_id))
    pick = min(round(fraction * (len(by_promise) - 1)), len(by_promise) - 1)
    return by_promise[pick]
