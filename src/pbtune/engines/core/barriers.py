"""Where segments end, and the early-release rule at perturbation boundaries (pure).

Why apart from the coordinator: this is PBT's arithmetic — a segment never crosses a boundary or
a checkpoint iteration; at a boundary every live trial is ranked by its score *at that
iteration* — and it reads best on its own, as functions of the trials' iterations.

Early release (``pbt.early_release``, on by default): the decisions at a boundary wait for the
last trial to reach it, but a trial whose score there already ranks above the bottom quantile
whatever the others still score (:func:`~pbtune.pbt.policy.safe_from_exploit`) goes on to the next
boundary at once, so a worker that would idle trains instead. It may still be a donor: its state
at the boundary is kept (:class:`~pbtune.engines.core.state.Kept`). The decisions, and every
trial's results, are the same as without early release; only the order of segments changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pbtune.engines.base import ERROR, PAUSED, PENDING, TERMINATED
from pbtune.engines.core.events import Restore
from pbtune.engines.core.state import Kept, TrialState
from pbtune.pbt.policy import safe_from_exploit


@dataclass(frozen=True)
class Barriers:
    """Barrier arithmetic for one run.

    Attributes:
        interval: perturbation interval (iterations).
        max_iter: iterations per trial.
        ckpt_interval: iterations between checkpoints (segments end there too).
        perturbs: False for policies without boundaries (random search): one barrier, the end.
    """

    interval: int
    max_iter: int
    ckpt_interval: int
    perturbs: bool = True

    def after(self, iteration: int) -> int:
        """The first barrier after ``iteration``."""
        if not self.perturbs:
            return self.max_iter
        return min((iteration // self.interval + 1) * self.interval, self.max_iter)

    def segment_end(self, t: TrialState, barrier: int) -> int:
        """Where a segment starting now may end: the barrier, the next boundary, the next
        checkpoint iteration (each checkpoint is a segment-end snapshot) or the last iteration."""
        nxt_ckpt = (t.iteration // self.ckpt_interval + 1) * self.ckpt_interval
        return min(barrier, (t.iteration // self.interval + 1) * self.interval, self.max_iter,
                   nxt_ckpt)

    @staticmethod
    def released(t: TrialState, barrier: int) -> bool:
        """Whether ``t`` went on past ``barrier`` before that boundary's decisions."""
        return t.kept is not None and t.kept.iteration == barrier and t.iteration >= barrier

    def limit(self, t: TrialState, barrier: int) -> int:
        """The iteration ``t`` may run up to now: the next barrier once it is released."""
        return self.after(barrier) if self.released(t, barrier) else barrier

    def end(self, t: TrialState, barrier: int) -> int:
        """The iteration ``t``'s next segment ends at."""
        return self.segment_end(t, self.limit(t, barrier))

    def may_go_on(self, released: Iterable[TrialState]) -> list[TrialState]:
        """Of trials released past the current barrier, those waiting below the next one."""
        out = []
        for t in released:
            kept = t.kept
            if kept is not None and t.status in (PENDING, PAUSED) and t.iteration < self.after(
                    kept.iteration) and self.released(t, kept.iteration):
                out.append(t)
        return out

    def scores_at(self, trials: Mapping[str, TrialState], barrier: int) -> dict[str, float]:
        """Trial id → raw score at ``barrier`` of every trial ranked there so far.

        Those paused at it, those released past it (even if a later segment has errored: without
        early release that error would come after these decisions), and errored trials the
        policy may still replace, as NaN.
        """
        scores = {}
        for t in trials.values():
            if self.released(t, barrier) or (t.status == PAUSED and t.iteration == barrier):
                scores[t.trial_id] = t.scores[barrier]
            elif t.status == ERROR and t.recoverable:
                scores[t.trial_id] = math.nan
        return scores

    def release(self, trials: Mapping[str, TrialState], barrier: int, policy: object,
                mode: str, pending: int) -> list[TrialState]:
        """Release the trials waiting at ``barrier`` that its decisions cannot replace.

        ``pending``: live trials still below the barrier (the coordinator's index counts them).
        """
        waiting = [t for t in trials.values() if t.status == PAUSED
                   and t.iteration == barrier and not self.released(t, barrier)]
        if not waiting:
            return []
        if policy.is_boundary(barrier):  # type: ignore[attr-defined]
            sign = 1.0 if mode == "max" else -1.0
            scores = {tid: sign * v for tid, v in self.scores_at(trials, barrier).items()}
            fraction = policy.settings.quantile_fraction  # type: ignore[attr-defined]
            safe = set(safe_from_exploit(scores, pending, fraction))
            waiting = [t for t in waiting if t.trial_id in safe]
        for t in waiting:
            state = t.pending.state if t.pending is not None else t.snapshot
            t.kept = Kept(barrier, state, t.compute_s, t.record.failures)
        return waiting

    def rewind(self, trials: Mapping[str, TrialState], last_barrier: int) -> None:
        """Put released trials back at the boundary whose decisions are not made yet.

        For the last cut of an interrupted run: with every trial at or below that boundary and
        the policy's state before its decisions, the cut is one consistent experiment; the work
        done past it is done again on resume (it gives the same results).
        """
        barrier = self.after(last_barrier)
        for t in trials.values():
            kept = t.kept
            if kept is None or not self.released(t, barrier):
                continue
            t.iteration, t.record.compute_s, t.record.failures = (kept.iteration, kept.compute_s,
                                                                  kept.failures)
            t.snapshot = kept.state
            t.pending = Restore(kept.state) if kept.state is not None else None
            t.kept = None
            if t.status == ERROR:  # the error came after the boundary: it happens again
                t.status, t.record.error, t.recoverable = PAUSED, None, False
            elif t.status == TERMINATED:  # it finished past the boundary: it finishes again
                t.status = PAUSED
