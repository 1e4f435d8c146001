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
from collections.abc import Callable, Container, Mapping, MutableMapping
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


def park(live: MutableMapping[str, Any], budget: int, keep: Container[str] = ()) -> int:
    """Keep at most ``budget`` trials live (the most recently run); park the rest.

    Why: on a GPU worker every live trial keeps its model and optimiser state in device memory
    between segments; with many trials per worker (a large population on few GPUs) that, not
    the trial that is training, can fill the card. A parked trial costs host memory only and
    comes back, state and RNG exactly, the next time it runs here (:func:`load_trial`).
    ``live`` is in least-recently-run order (load_trial moves a trial to the end). Returns how
    many trials were parked now. ``keep``: trials training right now (a fused worker's other
    lanes), never parked: a parked copy would go stale while they train on.
    """
    resident = [tid for tid, w in list(live.items())
                if not isinstance(w, Parked) and tid not in keep]
    budget = max(0, budget - sum(1 for tid in keep if tid in live))
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


class Segment:
    """One trial's segment, an iteration at a time: what :func:`run_segment` does around each
    ``run_iteration``, so a worker that trains several trials' iterations together
    (:mod:`pbtune.engines.fused`) keeps each trial's rows, best state and stops exactly as
    :func:`run_segment` would. Arguments as :func:`run_segment`'s."""

    def __init__(self, live: MutableMapping[str, Any], trial_id: str, make: Callable[[], Any],
                 config: Mapping[str, Any], target_iteration: int, *, state: Any = None,
                 include_rng: bool = True, rng_from: Any = None, metric: str, mode: str,
                 threshold: float | None = None, best_so_far: float | None = None,
                 deadline: float | None = None, stop: Callable[[], bool] = lambda: False,
                 extra: Callable[[], dict[str, Any]] = dict, snapshot: bool = True,
                 copy_held_best: bool = True) -> None:
        self.live, self.trial_id, self.make, self.config = live, trial_id, make, config
        self.target = target_iteration
        self.load_args = (state, include_rng, rng_from)
        self.metric, self.mode, self.threshold = metric, mode, threshold
        self.best_so_far, self.deadline, self.stop, self.extra = best_so_far, deadline, stop, extra
        self.snapshot, self.copy_held_best = snapshot, copy_held_best
        self.rows: list[dict[str, Any]] = []
        self.artifacts: dict[int, dict[str, Any]] = {}  # iteration → the workload's artifacts()
        self.compute_s = 0.0  # s
        self.best_state: Any = None
        self.best_iteration: int | None = None
        self.fresh = trial_id not in live or state is not None  # built or loaded: check once
        self.workload: Any = None
        self.outcome: tuple[dict[str, Any], Any, Any] | None = None  # set when it has ended

    def begin(self) -> None:
        """Load (or continue) the trial's workload and apply the coordinator's Restore."""
        self.workload = load_trial(self.live, self.trial_id, self.make, self.config,
                                   *self.load_args)

    def active(self) -> bool:
        """Whether it wants another iteration."""
        return self.outcome is None and self.workload.iteration < self.target

    def record(self, step: Any) -> None:
        """Book one iteration's :class:`~pbtune.workloads.iteration.IterationResult`; ends the
        segment on an error, the threshold, a new best of a held state, the deadline or a stop."""
        workload = self.workload
        self.compute_s += step.elapsed_s
        if step.metric_error is None:  # the driver ranks every row it gets by the metric
            self.rows.append({**step.row, **self.extra()})
            if step.artifacts:
                self.artifacts[workload.iteration] = step.artifacts
        if step.error is not None:  # diverged, or no usable metric
            self.live.pop(self.trial_id, None)
            self.outcome = self._error(step.error, workload.iteration)
            return
        if is_better(step.value, self.best_so_far, self.mode):
            self.best_so_far = step.value
            self.best_iteration = workload.iteration
            # Held states: the segment ends here (below), so the end state is the best.
            self.best_state = workload.get_state() if self.snapshot else None
        if (reached(step.value, self.threshold, self.mode)
                # A held state that beat the best ends its segment here: the best is then the
                # end state, copied once, instead of a copy taken before the next iteration
                # that the iteration after it may make useless (the trial goes on at once).
                or (self.best_iteration == workload.iteration and not self.snapshot)
                or (self.deadline is not None and time.time() >= self.deadline)
                or self.stop()):
            self.outcome = self._end()

    def finish(self) -> tuple[dict[str, Any], Any, Any]:
        """``(result, best_state, snapshot)`` as :func:`run_segment` returns them."""
        if self.outcome is None:
            self.outcome = self._end()
        return self.outcome

    def fail(self, exc: BaseException) -> tuple[dict[str, Any], Any, Any]:
        """User code raised: the trial errors (and is forgotten here), the run goes on."""
        self.live.pop(self.trial_id, None)
        self.outcome = self._error(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                                   None)
        return self.outcome

    def _error(self, error: str, iteration: int | None) -> tuple[dict[str, Any], None, None]:
        return ({"rows": self.rows, "compute_s": self.compute_s, "iteration": iteration,
                 "status": "error", "error": error, "artifacts": self.artifacts}, None, None)

    def _end(self) -> tuple[dict[str, Any], Any, Any]:
        workload = self.workload
        # A held state (no snapshot) is not pickled here just to check it: for gigabytes that
        # costs seconds and a second copy; its first export or checkpoint reports the problem.
        end_state = workload.get_state() if self.snapshot else None
        best_state = self.best_state
        if (self.best_iteration == workload.iteration and best_state is None
                and self.copy_held_best):
            best_state = workload.get_state()  # the end state is the best: one copy of it
        if self.fresh and self.snapshot:
            problem = unpicklable(end_state)
            if problem:
                self.live.pop(self.trial_id, None)
                return self._error(problem, workload.iteration)
        return ({"rows": self.rows, "compute_s": self.compute_s, "iteration": workload.iteration,
                 "status": "ok", "error": None, "best_iteration": self.best_iteration,
                 "best_value": self.best_so_far if self.best_iteration is not None else None,
                 "artifacts": self.artifacts}, best_state, end_state)


def run_segment(live: MutableMapping[str, Any], trial_id: str, make: Callable[[], Any],
                config: Mapping[str, Any], target_iteration: int, *,
                before_iteration: Callable[[], None] | None = None, **kwargs: Any,
                ) -> tuple[dict[str, Any], Any, Any]:
    """Train a trial up to ``target_iteration``, evaluating after every iteration.

    Stops early when its metric reaches ``threshold``, a loss or the metric stops being finite,
    the wall clock passes ``deadline`` (epoch seconds) or ``stop()`` says so.

    Keyword arguments: ``state``, ``include_rng``, ``rng_from`` (the coordinator's Restore),
    ``metric``, ``mode``, ``threshold``, ``best_so_far``, ``deadline``, ``stop``, ``extra``
    (columns added to every row), ``snapshot``, ``copy_held_best`` (see :class:`Segment`).

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
    segment = Segment(live, trial_id, make, config, target_iteration, **kwargs)
    try:
        segment.begin()
        while segment.active():
            if before_iteration is not None:
                before_iteration()
            segment.record(run_iteration(segment.workload, segment.metric))
        return segment.finish()
    except Exception as exc:  # user code failed: the trial errors, the run goes on
        return segment.fail(exc)
