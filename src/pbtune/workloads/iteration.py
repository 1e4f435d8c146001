"""One training iteration + evaluation → the result row, shared by every engine (no Ray here).

Why: the native worker, the Ray Tune trainable and replay all run ``train(1)`` then
``evaluate()`` and turn the two dicts into a result row. Written three times, the column names,
the timing and the checks drift apart; here they are written once, so ``trials.csv`` means the
same thing whichever engine produced it. What the callers do differently stays with them: the
worker adds resource usage and stops a trial on :attr:`IterationResult.error`, the trainable
reports :attr:`IterationResult.metrics` to Tune (Tune keeps its own iteration, timing and
timestamp columns) and replay writes its rows through the results writer.

A metric the engine cannot rank by (missing from ``evaluate()``'s dict, or not a number) used to
surface as a bare ``KeyError``/``ValueError`` from ``float()`` deep in an engine; it is now a
message that names the metric, its type and the iteration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_REPR_CHARS = 80  # a tensor's repr can run to pages; the message needs only its start


@dataclass(frozen=True)
class IterationResult:
    """What one :func:`run_iteration` produced.

    Attributes:
        metrics: the train metrics (prefixed ``train_`` unless they already are), then the eval
            metrics, values as the workload returned them.
        row: :attr:`metrics` plus ``iteration`` (the workload's, after training),
            ``time_this_iter_s`` and ``timestamp`` (epoch seconds): the columns every engine
            writes; callers add their own (worker, node, resource usage, config).
        value: the ranking metric as a float; NaN when it is missing or not a number.
        elapsed_s: seconds inside ``train(1)`` + ``evaluate()`` (the run's ``compute_s``).
        error: why the trial cannot go on (metric missing or not a number, a loss not a
            number, metric or a ``*loss`` column not finite), else ``None``.
        metric_error: the subset of :attr:`error` that leaves no metric to rank by (missing or
            not a number). Engines that tolerate non-finite values (Tune, replay) still stop on
            this one, as they did when ``float()`` raised.
        artifacts: what the workload's optional ``artifacts()`` returned after evaluating
            (name → image array, e.g. a GAN's sample grid), else ``None``; never in the row.
    """

    metrics: dict[str, Any]
    row: dict[str, Any]
    value: float
    elapsed_s: float
    error: str | None = None
    metric_error: str | None = None
    artifacts: dict[str, Any] | None = None


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_CHARS else text[:_REPR_CHARS - 3] + "..."


def as_number(value: Any) -> float | None:
    """``float(value)``, or ``None`` when ``value`` is not a number.

    Accepted as before: Python and numpy numbers, one-element torch tensors and numpy arrays
    (what ``float()`` takes). Refused: strings (a formatted ``f"{acc:.3f}"`` is a bug that
    ``float()`` would hide), ``None``, lists and multi-element arrays or tensors.
    """
    if isinstance(value, (str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _not_a_number(what: str, value: Any, iteration: int) -> str:
    return (f"{what} at iteration {iteration} has type {type(value).__name__} "
            f"({_short_repr(value)}), not a number; return a float (e.g. tensor.item())")


def check_row(row: Mapping[str, Any], eval_metrics: Mapping[str, Any], metric: str,
              iteration: int) -> tuple[float, str | None, str | None]:
    """``(value, error, metric_error)`` for a row; see :class:`IterationResult`.

    The finiteness message is the one the native worker has always written (logs and tests
    match on it): ``non-finite metric or loss at iteration N: metric=value, losses=[...]``.
    """
    if metric not in eval_metrics:
        message = (f"metric {metric!r} is not among the metrics evaluate() returned at "
                   f"iteration {iteration}: {sorted(eval_metrics)}")
        return math.nan, message, message
    value = as_number(eval_metrics[metric])
    if value is None:
        message = _not_a_number(f"metric {metric!r} from evaluate()", eval_metrics[metric],
                                iteration)
        return math.nan, message, message
    losses: list[float] = []
    for key, raw in row.items():
        if key.endswith("loss"):
            loss = as_number(raw)
            if loss is None:
                return value, _not_a_number(f"loss {key!r}", raw, iteration), None
            losses.append(loss)
    if not math.isfinite(value) or not all(math.isfinite(v) for v in losses):
        return value, (f"non-finite metric or loss at iteration {iteration}: "
                       f"{metric}={value}, losses={losses}"), None
    return value, None, None


def run_iteration(workload: Any, metric: str) -> IterationResult:
    """Train ``workload`` one iteration, evaluate it and build the result row.

    Exceptions from the workload's own code propagate: each engine reports them its way (the
    worker with the traceback in the trial's error). A bad metric or loss does not raise; it is
    in :attr:`IterationResult.error` so the caller decides (the row is still returned, so the
    iteration that went wrong is visible in ``trials.csv``).
    """
    start = time.perf_counter()
    train_metrics = workload.train(1)
    eval_metrics = workload.evaluate()
    return iteration_result(workload, metric, train_metrics, eval_metrics, start)


def iteration_result(workload: Any, metric: str, train_metrics: Mapping[str, Any],
                     eval_metrics: Mapping[str, Any], start: float) -> IterationResult:
    """The row of an iteration ``workload`` has just trained and evaluated (since
    ``start``, a ``time.perf_counter()``): :func:`run_iteration`'s, or a fused group's
    (:mod:`pbtune.workloads.fusion`) for each of its members."""
    hook = getattr(workload, "artifacts", None)  # optional: images of this iteration's model
    artifacts = dict(hook()) if callable(hook) else None
    elapsed = time.perf_counter() - start
    metrics = {f"train_{k}" if not k.startswith("train_") else k: v
               for k, v in train_metrics.items()}
    metrics.update(eval_metrics)
    row = dict(metrics)
    row.update(iteration=workload.iteration, time_this_iter_s=elapsed, timestamp=time.time())
    value, error, metric_error = check_row(row, eval_metrics, metric, workload.iteration)
    return IterationResult(metrics=metrics, row=row, value=value, elapsed_s=elapsed, error=error,
                           metric_error=metric_error, artifacts=artifacts or None)
