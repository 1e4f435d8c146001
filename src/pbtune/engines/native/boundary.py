"""Where segments end and what happens at a perturbation boundary (the native engine's PBT step).

Why apart from the loop: this is the PBT semantics of the engine — a segment never crosses a
boundary or a checkpoint iteration, and at a boundary every live trial is ranked by its score *at
that iteration* — while the loop in ``engine.py`` is about dispatch, results and failures.
"""

from __future__ import annotations

import math
from typing import Any

from pbtune.engines.base import ERROR, PAUSED, Trial


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

    def _perturb(self, pool: Any, iteration: int) -> None:
        live = [t for t in self.trials.values() if t.status == PAUSED and t.iteration == iteration]
        if self.policy is None or iteration >= self.max_iter or not self.policy.is_boundary(
            iteration
        ):
            return
        # Errored trials PBT may still replace rank as the worst (NaN) and copy a donor.
        errored = [t for t in self.trials.values() if t.status == ERROR and t.recoverable]
        scores = {t.trial_id: t.scores[iteration] for t in live}
        scores.update({t.trial_id: math.nan for t in errored})
        configs = {t.trial_id: t.config for t in [*live, *errored]}
        for decision in self.policy.decide(iteration, scores, configs):
            donor, target = self.trials[decision.donor], self.trials[decision.target]
            if donor.status != PAUSED:  # more errored trials than the bottom quantile holds
                continue
            state = donor.pending_state if donor.pending_state is not None else donor.snapshot
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
