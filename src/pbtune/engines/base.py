"""What every engine shares: the trial record and the callback protocol (no Ray imports here).

Why: engines decide and execute; results writers, the live status table and the journal only
*observe*. Engines emit events to :class:`Callback` objects the CLI wires in, so the outer layers
(results, reporting) never reach into an engine, and a new engine gets every sink for free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"
LIVE = (PENDING, PAUSED, RUNNING)  # statuses of a trial that still trains


@dataclass
class Trial:
    """One population member as results, reporting and replay see it (the public record).

    Engines keep what only they need (state handles, kept boundary states, checkpoint
    bookkeeping) in their own per-trial state and update this record in place.

    Attributes:
        trial_id: stable id (``t000``, ``t001``, ...).
        config: current hyperparameters (changed by explore).
        seed: seeds the trial's model init and data order.
        iteration: training iterations completed.
        status: one of PENDING, RUNNING, PAUSED, TERMINATED, ERROR.
        worker: index of the worker running or holding the trial, or None.
        compute_s: seconds inside train + evaluate, summed over segments.
        results: rows reported (iterations counted in the summary).
        exploits: times this trial copied a donor.
        failures: errors and worker losses so far (checked against ``max_failures``).
        error: the last error message (with traceback for exceptions).
        last_result: the latest result row (its metrics).
        lineage: ``donor@iteration`` for every exploit, oldest first.
    """

    trial_id: str
    config: dict[str, Any]
    seed: int
    iteration: int = 0
    status: str = PENDING
    worker: int | None = None
    compute_s: float = 0.0
    results: int = 0
    exploits: int = 0
    failures: int = 0
    error: str | None = None
    last_result: dict[str, Any] = field(default_factory=dict)
    lineage: list[str] = field(default_factory=list)


class Callback:
    """Observer of a run. Every hook has a no-op default; override what you need."""

    def on_start(self, info: dict[str, Any]) -> None:
        """The run starts: ``info`` has run settings, workers (index, node, ip) and the trials."""

    def on_trial_start(self, trial: Trial) -> None:
        """A trial is created with its initial config."""

    def on_result(self, trial: Trial, row: dict[str, Any]) -> None:
        """One iteration's metrics: ``iteration``, metrics, ``config``, ``worker``, ``node``."""

    def on_artifacts(self, trial: Trial, row: dict[str, Any], artifacts: dict[str, Any]) -> None:
        """The workload's ``artifacts()`` after the iteration of ``row`` (name → image array);
        native engine only."""

    def on_workers(self, workers: list[dict[str, Any]]) -> None:
        """The pool changed mid-run (nodes joined or left): every worker so far, each with
        ``index``, ``node_id``, ``ip`` and ``alive`` (False once its node left or it was lost)."""

    def on_segment(self, trial: Trial, worker: int, start_s: float, end_s: float) -> None:
        """A trial ran on ``worker`` from ``start_s`` to ``end_s`` (seconds since the start)."""

    def on_exploit(self, decision: Any) -> None:
        """A PBT decision (``pbtune.pbt.Decision``): target copied donor and explored."""

    def on_trial_end(self, trial: Trial) -> None:
        """A trial reached TERMINATED or ERROR."""

    def on_end(self, summary: dict[str, Any], best_state: dict[str, Any] | None) -> None:
        """The run ended; ``best_state`` is the best trial's state at its best iteration."""


def is_better(value: float, reference: float | None, mode: str) -> bool:
    """Whether ``value`` beats ``reference`` under ``mode`` (non-finite never wins)."""
    if not math.isfinite(value):
        return False
    if reference is None or not math.isfinite(reference):
        return True
    return value > reference if mode == "max" else value < reference


def reached(value: float, threshold: float | None, mode: str) -> bool:
    """Whether ``value`` meets a stopping threshold under ``mode``."""
    if threshold is None or not math.isfinite(value):
        return False
    return value >= threshold if mode == "max" else value <= threshold


def run_summary(*, best: dict[str, Any] | None, metric: str, mode: str, wall_s: float,
                startup_s: float, trials: Any, slots: int, exploits: int, population: int,
                compute_before_s: float = 0.0, **extra: Any) -> dict[str, Any]:
    """The ``summary.json`` keys every engine writes (``extra`` adds engine-specific ones).

    ``trials`` are objects with ``compute_s`` and ``results`` (iterations reported).
    ``efficiency = compute_s / (slots × wall_s)``: the share of slot time spent training.
    After a resume, ``wall_s`` is this session's, so ``compute_s`` is too: the trials' totals
    minus ``compute_before_s`` (what they carried in from before the resume point), which the
    summary keeps as ``compute_s_total``.
    """
    trials = list(trials)
    total = sum(t.compute_s for t in trials)
    compute_s = max(0.0, total - compute_before_s)
    if compute_before_s:
        extra = {"compute_s_total": round(total, 3), **extra}
    return {
        "best": best,
        "metric": metric,
        "mode": mode,
        "wall_s": round(wall_s, 3),
        "startup_s": round(startup_s, 3),
        "compute_s": round(compute_s, 3),
        "slots": slots,
        "efficiency": round(compute_s / (slots * wall_s), 4) if wall_s > 0 else 0.0,
        "iterations": sum(t.results for t in trials),
        "exploits": exploits,
        "trials": population,
        **extra,
    }
