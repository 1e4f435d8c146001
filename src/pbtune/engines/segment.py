"""Running one segment of a trial where its workload lives (no Ray: every executor shares it).

Why one function: the Ray worker and the simulated executor must run a segment *identically* —
load the state the coordinator's :class:`~pbtune.engines.core.events.Restore` names, keep the
trial's own data-order RNG on exploit, apply the explored config, then iterate with
:func:`~pbtune.workloads.iteration.run_iteration` until the target, a stop, the threshold, the
deadline or an error — so a scenario run in-process gives the decisions and rows a Ray run gives.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from pbtune.engines.base import is_better, reached
from pbtune.workloads.iteration import run_iteration


class Parked:
    """A trial a worker still holds, moved off its device: its full state, on the host."""

    def __init__(self, state: Any, iteration: int) -> None:
        self.state = state
        self.iteration = iteration  # what a held state's export checks

    def get_state(self) -> Any:  # what export_state reads: the state as it was parked
        return self.state


def park(live: MutableMapping[str, Any], budget: int) -> int:
    """Keep at most ``budget`` trials live (the most recently run); park the rest.

    Why: on a GPU worker every live trial keeps its model and optimiser state in device memory
    between segments; with many trials per worker (a large population on few GPUs) that, not
    the trial that is training, can fill the card. A parked trial costs host memory only and
    comes back, state and RNG exactly, the next time it runs here (:func:`load_trial`).
    ``live`` is in least-recently-run order (load_trial moves a trial to the end). Returns how
    many trials were parked now.
    """
    resident = [tid for tid, w in live.items() if not isinstance(w, Parked)]
    parked = 0
    for tid in resident[:max(0, len(resident) - budget)]:
        live[tid] = Parked(live[tid].get_state(), live[tid].iteration)
        parked += 1
    return parked


def load_trial(live: MutableMapping[str, Any], trial_id: str, make: Callable[[], Any],
               config: Mapping[str, Any], state: Any = None, include_rng: bool = True,
               rng_from: Any = None) -> Any:
    """The trial's workload, ready for its next segment (applies the coordinator's Restore).

    A worker that holds the trial live continues it; otherwise it builds one. An exploit
    (``include_rng`` False) loads the donor's state but keeps the target's data-order RNG: the
    live workload's own, or for a workload built here the one in ``rng_from`` (the target's own
    state), so which worker runs the target cannot change its results.
    """
    workload = live.pop(trial_id, None)  # re-inserted last: the most recently run
    if isinstance(workload, Parked):
        held = workload.state
        workload = make()
        workload.set_state(held)  # everything, its own RNG included, as it was parked
    if workload is not None:
        live[trial_id] = workload
    else:
        workload = live[trial_id] = make()
        if state is not None and not include_rng and rng_from is not None:
            workload.set_state(rng_from)  # the trial's own RNG; the donor's rest below
    if state is not None:
        workload.set_state(state, include_rng=include_rng)
    if dict(workload.config) != dict(config):
        workload.apply_hyperparameters(config)
    return workload


def unpicklable(state: Any) -> str | None:
    """Why ``state`` cannot be sent between processes, or None.

    Why: a worker's states travel through Ray's object store and into checkpoint files; one that
    cannot be pickled would fail far from its cause (a donor's state, a checkpoint thread). It is
    checked once each time a trial is built or loaded on a worker, where the cost (one pickling)
    is small next to the state transfer that brought it.
    """
    import pickle

    try:
        pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return (f"get_state() returned something that cannot be pickled ({type(exc).__name__}: "
                f"{exc}); return tensors, numpy arrays, numbers, dicts and lists")
    return None


def run_segment(live: MutableMapping[str, Any], trial_id: str, make: Callable[[], Any],
                config: Mapping[str, Any], target_iteration: int, *, state: Any = None,
                include_rng: bool = True, rng_from: Any = None, metric: str, mode: str,
                threshold: float | None = None, best_so_far: float | None = None,
                deadline: float | None = None, stop: Callable[[], bool] = lambda: False,
                extra: Callable[[], dict[str, Any]] = dict, snapshot: bool = True,
                copy_held_best: bool = True, before_iteration: Callable[[], None] | None = None,
                ) -> tuple[dict[str, Any], Any, Any]:
    """Train a trial up to ``target_iteration``, evaluating after every iteration.

    Stops early when its metric reaches ``threshold``, a loss or the metric stops being finite,
    the wall clock passes ``deadline`` (epoch seconds) or ``stop()`` says so.

    Returns:
        ``(result, best_state, snapshot)``: ``result`` has ``rows`` (one per iteration, plus the
        columns ``extra()`` adds), ``artifacts`` (iteration → the workload's ``artifacts()``,
        for those that have any), ``compute_s`` (s inside train + evaluate), ``iteration``,
        ``status`` (``"ok"``/``"error"``), ``error`` and ``best_iteration``; ``best_state`` is
        the state at the latest iteration that beat ``best_so_far`` (else None); ``snapshot`` the
        state at the end (None on error, and None without ``snapshot``: a worker that keeps
        large states live takes no copy, and ends the segment after an iteration that beats
        ``best_so_far``, so the best is its end state). A workload that errors is dropped from
        ``live``: a diverged or broken state is never continued. ``copy_held_best=False``: a held
        best state is not copied here (the caller copies it later, if still wanted).
        ``before_iteration``: called before each iteration trains (a gang's rank 0 tells the
        other ranks to train one more, see :mod:`pbtune.engines.native.gang`).
    """
    rows: list[dict[str, Any]] = []
    artifacts: dict[int, dict[str, Any]] = {}  # iteration → the workload's artifacts()
    compute_s = 0.0  # s
    best_state, best_iteration = None, None
    fresh = trial_id not in live or state is not None  # built or loaded: check its state once
    try:
        workload = load_trial(live, trial_id, make, config, state, include_rng, rng_from)
        while workload.iteration < target_iteration:
            if before_iteration is not None:
                before_iteration()
            step = run_iteration(workload, metric)
            compute_s += step.elapsed_s
            if step.metric_error is None:  # the driver ranks every row it gets by the metric
                rows.append({**step.row, **extra()})
                if step.artifacts:
                    artifacts[workload.iteration] = step.artifacts
            if step.error is not None:  # diverged, or no usable metric
                live.pop(trial_id, None)
                return ({"rows": rows, "compute_s": compute_s, "iteration": workload.iteration,
                         "status": "error", "error": step.error, "artifacts": artifacts},
                        None, None)
            if is_better(step.value, best_so_far, mode):
                best_so_far = step.value
                best_iteration = workload.iteration
                # Held states: the segment ends here (below), so the end state is the best.
                best_state = workload.get_state() if snapshot else None
            if reached(step.value, threshold, mode):
                break
            if best_iteration == workload.iteration and not snapshot:
                # A held state that beat the best ends its segment here: the best is then the
                # end state, copied once, instead of a copy taken before the next iteration
                # that the iteration after it may make useless (the trial goes on at once).
                break
            if deadline is not None and time.time() >= deadline:
                break
            if stop():
                break
        # A held state (no snapshot) is not pickled here just to check it: for gigabytes that
        # costs seconds and a second copy; its first export or checkpoint reports the problem.
        end_state = workload.get_state() if snapshot else None
        if best_iteration == workload.iteration and best_state is None and copy_held_best:
            best_state = workload.get_state()  # the end state is the best: one copy of it
        if fresh and snapshot:
            problem = unpicklable(end_state)
            if problem:
                live.pop(trial_id, None)
                return ({"rows": rows, "compute_s": compute_s, "iteration": workload.iteration,
                         "status": "error", "error": problem}, None, None)
        return ({"rows": rows, "compute_s": compute_s, "iteration": workload.iteration,
                 "status": "ok", "error": None, "best_iteration": best_iteration,
                 "best_value": best_so_far if best_iteration is not None else None,
                 "artifacts": artifacts}, best_state, end_state)
    except Exception as exc:  # user code failed: the trial errors, the run goes on
        live.pop(trial_id, None)
        return ({"rows": rows, "compute_s": compute_s, "iteration": None, "status": "error",
                 "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                 "artifacts": artifacts}, None, None)
