"""What the native engine does when a trial errors or its worker is lost.

Why: failures must cost as little as possible and never corrupt the run's record. A trial whose
worker dies (actor killed, out of memory, node removed) continues on a recreated or another worker
from the state its failed segment started from — the snapshot reference every segment returns —
so no iteration is trained or reported twice; only when that state itself was lost with its node
does it roll back to its latest checkpoint on disk (re-run rows are not reported again). A trial
whose user code raised or produced a NaN/inf is marked ERROR with its traceback in
``trials/<trial_id>/error.txt``; PBT replaces it from a donor at the next boundary. Both count
against ``fault_tolerance.max_failures`` per trial.
"""

from __future__ import annotations

from typing import Any

import ray

from pbtune.engines.base import ERROR, PAUSED, Trial


class FailureHandler:
    """Failure policy of one :class:`~pbtune.engines.native.engine.NativeEngine`."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.max_failures: int = engine.cfg.fault_tolerance.max_failures

    def _journal(self, record: dict[str, Any], sync: bool = False) -> None:
        self.engine._journal(record, sync)

    def _write_error(self, trial: Trial, text: str) -> None:
        rec = self.engine.recovery
        if rec is None:
            return
        path = rec.run_dir / "trials" / trial.trial_id / "error.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(f"--- failure {trial.failures} at iteration {trial.iteration} "
                    f"(config {trial.config})\n{text.rstrip()}\n")

    def trial_error(self, trial: Trial, error: str) -> None:
        """User code raised, or a metric or loss stopped being finite."""
        trial.failures += 1
        trial.status, trial.error, trial.worker = ERROR, error, None
        trial.recoverable = self.engine.pbt_on and trial.failures <= self.max_failures
        self._write_error(trial, error)
        self._journal({"event": "error", "trial": trial.trial_id, "iteration": trial.iteration,
                       "failures": trial.failures, "recoverable": trial.recoverable,
                       "message": error.splitlines()[0] if error else ""}, sync=True)
        self.engine._emit("on_trial_end", trial)

    def worker_lost(self, pool: Any, worker: int, trial: Trial, exc: BaseException) -> None:
        """The segment's worker (or the state it was given) is gone: continue elsewhere."""
        state_lost = isinstance(exc, ray.exceptions.ObjectLostError)
        replaced = None
        if not state_lost:
            replaced = pool.replace(worker)
            for other in self.engine.trials.values():  # its other live states are gone too
                if other.worker == worker and other is not trial:
                    other.worker = None
                    if other.pending_state is None:
                        other.pending_state, other.include_rng = other.snapshot, True
        trial.failures += 1
        self._journal({"event": "worker_lost", "worker": worker, "trial": trial.trial_id,
                       "iteration": trial.iteration, "failures": trial.failures,
                       "reason": type(exc).__name__, "replaced": replaced}, sync=True)
        trial.worker = None
        if trial.failures > self.max_failures:
            trial.status, trial.recoverable = ERROR, False
            trial.error = (f"lost its worker {trial.failures} times (max_failures = "
                           f"{self.max_failures}); last: {type(exc).__name__}: {exc}")
            self._write_error(trial, trial.error)
            self.engine._emit("on_trial_end", trial)
            return
        trial.status = PAUSED
        state, include_rng = trial.recover
        if state_lost or (state is None and trial.iteration > 0):
            state, include_rng = self._from_disk(trial)
        trial.pending_state, trial.include_rng = state, include_rng

    def _from_disk(self, trial: Trial) -> tuple[Any, bool]:
        """Roll back to the trial's latest checkpoint (or iteration 0 when it has none)."""
        rec = self.engine.recovery
        latest = rec._latest.get(trial.trial_id) if rec is not None else None
        if latest is None:
            trial.iteration, trial.snapshot = 0, None
            return None, True
        state = rec.store.load(latest)
        trial.iteration, trial.config = int(latest["iteration"]), dict(latest["config"])
        trial.snapshot = ray.put(state)
        return trial.snapshot, bool(latest.get("include_rng", True))
