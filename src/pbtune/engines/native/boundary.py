"""Where segments end and what happens at a perturbation boundary (the native engine's PBT step).

Why apart from the loop: this is the PBT semantics of the engine — a segment never crosses a
boundary or a checkpoint iteration, and at a boundary every live trial is ranked by its score *at
that iteration* — while the loop in ``engine.py`` is about dispatch, results and failures.

Early release (``pbt.early_release``, on by default): the decisions at a boundary wait for the
last trial to reach it, but a trial whose score there already ranks above the bottom quantile
whatever the others still score (:func:`~pbtune.pbt.policy.safe_from_exploit`) goes on to the next
boundary at once, so a worker that would idle trains instead. It may still be a donor: its state at
the boundary is kept for that. The decisions, and every trial's results, are the same as without
early release; only the order in which segments run changes.
"""

from __future__ import annotations

import math
from typing import Any

from pbtune.engines.base import ERROR, PAUSED, PENDING, RUNNING, Trial
from pbtune.engines.native.dispatch import assign
from pbtune.pbt.policy import safe_from_exploit


class BoundaryMixin:
    """Barrier arithmetic and the exploit/explore step of :class:`NativeEngine`.

    Uses the engine's ``pbt_on``, ``interval``, ``max_iter``, ``ckpt_interval``, ``trials``,
    ``policy``, ``exploits``, ``_journal`` and ``_emit``.
    """

    pbt_on: bool
    interval: int  # perturbation interval, iterations
    max_iter: int
    ckpt_interval: int  # iterations
    trials: dict[str, Trial]
    policy: Any
    exploits: int
    mode: str
    scheduling: str
    early_release: bool
    last_barrier: int

    def _barrier_after(self, iteration: int) -> int:
        if not self.pbt_on:
            return self.max_iter
        nxt = (iteration // self.interval + 1) * self.interval
        return min(nxt, self.max_iter)

    def _segment_end(self, trial: Trial, barrier: int) -> int:
        # Segments also end at checkpoint iterations, so each checkpoint is a segment-end snapshot.
        nxt_ckpt = (trial.iteration // self.ckpt_interval + 1) * self.ckpt_interval
        return min(barrier, (trial.iteration // self.interval + 1) * self.interval, self.max_iter,
                   nxt_ckpt)

    def _released(self, trial: Trial, barrier: int) -> bool:
        """Whether ``trial`` went on past ``barrier`` before that boundary's decisions."""
        kept = trial.boundary
        return kept is not None and kept[0] == barrier and trial.iteration >= barrier

    def _limit(self, trial: Trial, barrier: int) -> int:
        """The iteration ``trial`` may run up to now: the next barrier once it is released."""
        return self._barrier_after(barrier) if self._released(trial, barrier) else barrier

    def _end(self, trial: Trial, barrier: int) -> int:
        """The iteration ``trial``'s next segment ends at."""
        return self._segment_end(trial, self._limit(trial, barrier))

    def _assign(self, pool: Any, busy: set[int], runnable: list[Trial],
                running: dict[int, tuple[float, int]], barrier: int) -> list[tuple[int, Trial]]:
        """Idle workers take trials still to reach the barrier, then released ones."""
        behind = [t for t in runnable if t.iteration < barrier]
        starts = []
        for group in (behind, [t for t in runnable if t.iteration >= barrier]):
            idle = [w for w in pool.idle(busy) if w not in {w for w, _t in starts}]
            if idle and group:
                starts += assign(idle, group, running, policy=self.scheduling,
                                 speeds=pool.speeds, mode=self.mode,
                                 length=lambda t, b=barrier: self._end(t, b) - t.iteration)
        return starts

    def _boundary_scores(self, barrier: int) -> dict[str, float]:
        """Trial id → raw score at ``barrier`` of every trial ranked there so far.

        Those paused at it, those released past it (even if a later segment has errored: without
        early release that error would come after these decisions), and errored trials PBT may
        still replace, as NaN.
        """
        scores = {}
        for t in self.trials.values():
            if self._released(t, barrier) or (t.status == PAUSED and t.iteration == barrier):
                scores[t.trial_id] = t.scores[barrier]
            elif t.status == ERROR and t.recoverable:
                scores[t.trial_id] = math.nan
        return scores

    def _release(self, barrier: int) -> list[Trial]:
        """Release the trials waiting at ``barrier`` that its decisions cannot replace."""
        if self.policy is None or not self.early_release or barrier >= self.max_iter:
            return []
        waiting = [t for t in self.trials.values() if t.status == PAUSED
                   and t.iteration == barrier and not self._released(t, barrier)]
        if not waiting:
            return []
        if self.policy.is_boundary(barrier):
            pending = sum(1 for t in self.trials.values()
                          if t.status in (PENDING, PAUSED, RUNNING) and t.iteration < barrier)
            sign = 1.0 if self.mode == "max" else -1.0
            scores = {tid: sign * v for tid, v in self._boundary_scores(barrier).items()}
            safe = set(safe_from_exploit(scores, pending, self.policy.settings.quantile_fraction))
            waiting = [t for t in waiting if t.trial_id in safe]
        for t in waiting:
            state = t.pending_state if t.pending_state is not None else t.snapshot
            t.boundary = (barrier, state, t.compute_s, t.failures)
        return waiting

    def _rewind_released(self) -> None:
        """Put released trials back at the boundary whose decisions are not made yet.

        For the last cut of an interrupted run: with every trial at or below that boundary and
        the policy's state before its decisions, the cut is one consistent experiment; the work
        done past it is done again on resume (it gives the same results).
        """
        barrier = self._barrier_after(self.last_barrier)
        for t in self.trials.values():
            if self._released(t, barrier):
                t.iteration, state, t.compute_s, t.failures = t.boundary  # type: ignore[misc]
                t.snapshot = t.pending_state = state
                t.include_rng, t.boundary = True, None
                if t.status == ERROR:  # the error came after the boundary: it happens again
                    t.status, t.error, t.recoverable = PAUSED, None, False

    def _pass_barrier(self, pool: Any, barrier: int) -> int:
        """Every trial has reached ``barrier``: decide there, forget the kept states, move on."""
        self._perturb(pool, barrier)
        for t in self.trials.values():
            if t.boundary is not None and t.boundary[0] <= barrier:
                t.boundary = None
        self.last_barrier = barrier
        return self._barrier_after(barrier)

    def _perturb(self, pool: Any, iteration: int) -> None:
        if self.policy is None or iteration >= self.max_iter or not self.policy.is_boundary(
            iteration
        ):
            return
        scores = self._boundary_scores(iteration)
        configs = {tid: self.trials[tid].config for tid in scores}
        for decision in self.policy.decide(iteration, scores, configs):
            donor, target = self.trials[decision.donor], self.trials[decision.target]
            if self._released(donor, iteration):
                state = donor.boundary[1]  # type: ignore[index]
            elif donor.status == PAUSED:
                state = donor.pending_state if donor.pending_state is not None else donor.snapshot
            else:  # more errored trials than the bottom quantile holds
                continue
            own = target.pending_state if target.pending_state is not None and \
                target.include_rng else target.snapshot
            target.rng_source = own  # its data-order RNG, wherever its next segment runs
            target.pending_state = state if state is not None else pool.export(
                donor.worker, donor.trial_id)
            target.include_rng = False
            if target.status == ERROR:  # replaced from a donor: it lives on at this boundary
                target.status, target.iteration, target.recoverable = PAUSED, iteration, False
                target.error = None
            target.config = dict(decision.new_config)
            target.exploits += 1
            self.exploits += 1
            self._journal({"event": "exploit", "target": decision.target, "donor": decision.donor,
                           "iteration": iteration, "new_config": decision.new_config,
                           "policy_state": self.policy.get_state()}, sync=True)
            self._emit("on_exploit", decision)
