"""When to checkpoint and when a resume point (*cut*) is complete (pure; the writing is not here).

Why: a cut at iteration C holds each trial's record at C, the checkpoint of its state at C, the
policy's state and the last boundary whose decisions were made. Segments end at multiples of
``checkpoint_interval`` and the policy decides only at barriers every trial has reached, so no
decision falls between a cut's trial states and its policy state: the cut is one consistent
experiment. This module decides which states to checkpoint and when a cut is complete; the
executor's writer (:mod:`pbtune.engines.persistence`) writes the files and journals the cut only
once all its checkpoints are on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pbtune.engines.base import ERROR, PENDING, TERMINATED
from pbtune.engines.core.events import Checkpoint, Command, WriteCut
from pbtune.engines.core.state import TrialState, trial_record


class CutTracker:
    """Checkpoint commands and cuts of one run.

    Args:
        interval: iterations between checkpoints (``checkpoint_interval``).
    """

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self._pending: dict[int, dict[str, dict[str, Any]]] = {}  # C → trial → record at C

    def segment_end(self, t: TrialState, final: bool) -> list[Command]:
        """After a trial's segment: checkpoint it at multiples of the interval and at its end."""
        it = t.iteration
        if it == t.ckpt_iter or not (final or it % self.interval == 0):
            return []
        out = [self._checkpoint(t, t.snapshot, True)]
        if it % self.interval == 0:
            self._pending.setdefault(it, {})[t.trial_id] = trial_record(t)
        return out

    def assemble(self, trials: Mapping[str, TrialState], extra: dict[str, Any],
                 spare: int) -> list[Command]:
        """Cuts whose trials have all passed them (call before perturbing).

        ``spare``: trials that are ended or not started (an upper bound on those that count
        without a record); when even they cannot complete the oldest cut, nothing is scanned.
        """
        out: list[Command] = []
        for c in sorted(self._pending):
            if len(self._pending[c]) + spare < len(trials):
                return out
            records = dict(self._pending[c])
            for tid, t in trials.items():
                if tid in records:
                    continue
                if t.status in (TERMINATED, ERROR) or (t.status == PENDING and t.iteration == 0):
                    records[tid] = trial_record(t)
                else:
                    return out  # an earlier cut is incomplete: later ones are too
            del self._pending[c]
            out.append(WriteCut({"event": "cut", "iteration": c, **extra, "trials": records}))
        return out

    def final_cut(self, trials: Mapping[str, TrialState], extra: dict[str, Any],
                  final: bool) -> list[Command]:
        """Checkpoint every trial's current state and cut the quiescent population.

        At the end of a run and after Ctrl-C nothing is running, so each trial's latest state
        (a pending exploit state, else its last snapshot) is consistent with the policy.
        """
        self._pending.clear()
        out: list[Command] = []
        records = {}
        for tid, t in trials.items():
            point = t.resume_point()
            rng = point.include_rng if point is not None else True
            if t.status != ERROR and point is not None and not rng:
                # An exploit its target has not run yet: the donor's state, and the target's
                # own state there for its RNG (both named by the cut, issue 14 item 1).
                if point.rng_from is not None and t.ckpt_iter != t.iteration:
                    out.append(self._checkpoint(t, point.rng_from, True))
                out.append(Checkpoint(t.trial_id, t.iteration, point.state, False,
                                      dict(t.config), role="exploit"))
            elif t.status != ERROR and point is not None and t.ckpt_iter != t.iteration:
                out.append(self._checkpoint(t, point.state, rng))
            records[tid] = {**trial_record(t), "include_rng": rng}
        out.append(WriteCut({"event": "cut", "iteration": max(
            (t.iteration for t in trials.values()), default=0), "final": final, **extra,
            "trials": records}))
        return out

    @staticmethod
    def _checkpoint(t: TrialState, state: Any, include_rng: bool) -> Checkpoint:
        t.ckpt_iter = t.iteration
        return Checkpoint(t.trial_id, t.iteration, state, include_rng, dict(t.config))
