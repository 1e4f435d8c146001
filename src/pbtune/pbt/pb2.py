"""The PB2 policy: PBT's exploit, with a Gaussian-process bandit choosing the explored values.

Why: PBT explores by multiplying a donor's values by 0.8 or 1.2, a random walk that needs a large
population to find good regions. PB2 (Parker-Holder et al. 2020, "Provably Efficient Online
Hyperparameter Optimization with Population-Based Bandits") instead learns, from every interval
the population has trained, how the *reward change* over an interval depends on the
hyperparameters, and picks the explored values by UCB on that model; a small population then
suffices. This is Ray Tune's ``PB2`` (``ray/tune/schedulers/pb2.py``) rebuilt as a pure policy:

* data: at each boundary one row per trial that has a finite score now and a finite score at the
  previous boundary: ``(t, R_before, x, y)`` with ``t`` the boundary in perturbation intervals,
  ``R_before`` the score the interval started from (the *donor's* score for a trial replaced
  there: it continued from the donor's weights), ``x`` the hyperparameters it ran with, scaled to
  [0, 1], and ``y`` the score change per interval (sign-adjusted: higher is better). NaN and inf
  scores never make a row. As in Ray, ``R_before`` is a context input (a trial near its ceiling
  improves less whatever its hyperparameters); a proposal is for the next interval: time of the
  next boundary, ``R_before`` the donor's score (clipped into the rows' range).
* model: :mod:`pbtune.pbt.pb2_gp` (scikit-learn GP, time-varying kernel, UCB over the bounds,
  the configs already proposed at this boundary treated as pending).
* modelled keys: top-level *bounded numeric* domains of ``hyperparam_mutations`` — uniform,
  quniform, randint (and loguniform, qloguniform, lograndint in log space), rounded back onto
  their grid or to integers. Every other key (plain lists, choice, randn, callables, nested
  mappings) is explored exactly as PBT explores it (:func:`~pbtune.pbt.explore.explore`
  restricted to those keys, same RNG, ``resample_probability`` and factors).
* too little data (the first boundary has no previous scores, so no rows; or fewer than
  ``MIN_ROWS``), or a donor without a finite score: the modelled keys are sampled uniformly
  within their bounds (log-uniformly for log domains) rather than kept from the donor.

Exploit is PBT's (:func:`~pbtune.pbt.policy.quantile_split`). Everything the policy remembers —
RNG, rows, the baselines of the next interval — is JSON data in :meth:`PB2Policy.get_state`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pbtune.pbt.base import POLICIES, Decision, Policy
from pbtune.pbt.domains import LogRandInt, LogUniform, QLogUniform, QUniform, RandInt, Uniform
from pbtune.pbt.explore import explore, load_callable
from pbtune.pbt.policy import PBTSettings, quantile_split
from pbtune.pbt.space import parse_space

_LOG_DOMAINS = (LogUniform, QLogUniform, LogRandInt)
_MODELLED = (Uniform, QUniform, RandInt, *_LOG_DOMAINS)
MIN_ROWS = 3  # fewer rows than this: sample the modelled keys uniformly
MAX_ROWS = 256  # the most recent rows kept: the time kernel discounts older ones anyway


def modelled_keys(mutations: Mapping[str, Any]) -> dict[str, Any]:
    """The keys PB2's GP chooses: top-level bounded numeric domains, in mutation order."""
    return {k: v for k, v in parse_space(mutations).items() if isinstance(v, _MODELLED)}


def to_unit(domain: Any, value: Any) -> float | None:
    """``value`` scaled so the domain's bounds are 0 and 1 (log scale for log domains).

    None for a value the model cannot use (missing, non-numeric, non-finite, not positive on a
    log scale). Values outside the bounds map outside [0, 1], as they are.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    lo, hi = (float(b) for b in domain.bounds)
    if isinstance(domain, _LOG_DOMAINS):
        if value <= 0:
            return None
        value, lo, hi = math.log(value), math.log(lo), math.log(hi)
    return (float(value) - lo) / (hi - lo) if hi > lo else 0.5


def from_unit(domain: Any, unit: float, current: Any) -> int | float:
    """The config value at ``unit`` in [0, 1]: on the domain's grid, an int where it must be."""
    lo, hi = (float(b) for b in domain.bounds)
    unit = min(max(float(unit), 0.0), 1.0)
    if isinstance(domain, _LOG_DOMAINS):
        value = math.exp(math.log(lo) + unit * (math.log(hi) - math.log(lo)))
    else:
        value = lo + unit * (hi - lo)
    value = domain.clip(value)
    if isinstance(current, int) and not isinstance(current, bool):  # as explore: ints stay ints
        return min(max(round(value), math.ceil(lo)), math.floor(hi))
    return value


@POLICIES.register("pb2")
class PB2Policy(Policy):
    """PBT's exploit; explore by a time-varying GP bandit on the modelled keys (see the module).

    Draws from ``self.rng`` at a boundary: one ``rng.getrandbits(32)`` for the GP fit's restarts
    (only when there is enough data); then for each lower-quantile trial in sorted id order:
    ``rng.choice`` of the donor among the sorted upper-quantile ids, the :func:`explore` draws of
    the keys PB2 does not model, then one ``rng.getrandbits(32)`` seeding the acquisition's
    candidates (or, with too little data, one ``rng.random()`` per modelled key).
    """

    def __init__(self, settings: PBTSettings, mode: str, seed: int) -> None:
        super().__init__(settings, mode, seed)
        self.mutations = parse_space(settings.hyperparam_mutations)
        self.modelled = modelled_keys(self.mutations)
        self.others = {k: v for k, v in self.mutations.items() if k not in self.modelled}
        fn = settings.custom_explore_fn
        self.custom_explore_fn: Callable[[dict[str, Any]], Any] | None = (
            load_callable(fn) if isinstance(fn, str) else fn
        )
        self.rows: list[list[float]] = []  # [t, r_before, y, *x]
        self.last_iteration: int | None = None
        # trial id → the sign-adjusted score its next interval starts from (None: unknown)
        self.baselines: dict[str, float | None] = {}

    def decide(
        self, iteration: int, scores: Mapping[str, float], configs: Mapping[str, Mapping[str, Any]]
    ) -> list[Decision]:
        """Record this interval's rows, then exploit as PBT and explore by the GP (see class).

        Args:
            iteration: the common iteration every trial in ``scores`` has reached.
            scores: trial id → metric at ``iteration`` (raw; ``mode`` is applied here).
            configs: trial id → current config (must cover every id in ``scores``).

        Returns:
            One Decision per replaced trial; empty off a boundary or with fewer than 2 trials.
        """
        adjusted = self.adjusted(iteration, scores, configs)
        if adjusted is None:
            return []
        self._record(iteration, adjusted, configs)
        lower, upper = quantile_split(adjusted, self.settings.quantile_fraction)
        self.baselines = {tid: _finite(s) for tid, s in adjusted.items()}
        self.last_iteration = iteration
        if not lower:
            return []
        model = self._fit()
        donors = sorted(upper)
        pending: list[np.ndarray] = []
        decisions = []
        for target in sorted(lower):
            donor = self.rng.choice(donors)
            old_config = copy.deepcopy(dict(configs[donor]))
            new_config = copy.deepcopy(old_config)
            if self.others:
                new_config = explore(
                    old_config, self.others, self.rng,
                    resample_probability=self.settings.resample_probability,
                    perturbation_factors=self.settings.perturbation_factors,
                    clip=self.settings.clip)
            unit = self._propose(model, iteration, adjusted[donor], pending)
            pending.append(unit)
            for (key, domain), u in zip(self.modelled.items(), unit, strict=True):
                new_config[key] = from_unit(domain, float(u), old_config.get(key))
            if self.custom_explore_fn is not None:
                new_config = self.custom_explore_fn(new_config)
                if not isinstance(new_config, dict):
                    raise ValueError("custom_explore_fn must return the config dict, got "
                                     f"{type(new_config).__name__}")
            # It continues from the donor's weights: its next reward change starts there.
            self.baselines[target] = _finite(adjusted[donor])
            decisions.append(Decision(target, donor, iteration, iteration, old_config, new_config))
        return decisions

    def _record(self, iteration: int, adjusted: Mapping[str, float],
                configs: Mapping[str, Mapping[str, Any]]) -> None:
        """One row per trial whose interval since the last boundary has a finite start and end."""
        if self.last_iteration is None or iteration <= self.last_iteration:
            return
        t = iteration / self.settings.perturbation_interval
        span = (iteration - self.last_iteration) / self.settings.perturbation_interval
        for tid in sorted(adjusted):
            before, now = self.baselines.get(tid), _finite(adjusted[tid])
            units = [to_unit(d, configs[tid].get(k)) for k, d in self.modelled.items()]
            if before is None or now is None or any(u is None for u in units):
                continue
            self.rows.append([t, before, (now - before) / span, *units])  # type: ignore[list-item]
        del self.rows[:-MAX_ROWS]

    def _fit(self) -> Any:
        """The GP on the recorded rows, or None when there are too few (or nothing to model)."""
        if not self.modelled or len(self.rows) < MIN_ROWS:
            return None
        from pbtune.pbt.pb2_gp import fit_gp  # scikit-learn: imported only when PB2 models

        data = np.asarray(self.rows, dtype=float)
        y = data[:, 2]
        y = np.clip((y - y.mean()) / (y.std() + 1e-8), -2.0, 2.0)  # Ray's standardisation
        X = np.hstack([data[:, :1], self._scale_context(data[:, 1]), data[:, 3:]])
        return fit_gp(X, y, self.rng.getrandbits(32))

    def _scale_context(self, r_before: Any) -> np.ndarray:
        """``R_before`` scaled by the rows' range (as Ray normalises it), as a column, in [0, 1].

        Clipped: a donor usually scores above every interval's start so far (scores grow), and a
        GP queried outside its data predicts its prior there, everywhere alike.
        """
        data = np.asarray(self.rows, dtype=float)[:, 1]
        lo, hi = float(data.min()), float(data.max())
        scaled = (np.asarray(r_before, dtype=float) - lo) / (hi - lo + 1e-8)
        return np.clip(scaled, 0.0, 1.0).reshape(-1, 1)

    def _propose(self, model: Any, iteration: int, donor_score: float,
                 pending: list[np.ndarray]) -> np.ndarray:
        """Unit-scaled values of the modelled keys for one target (UCB, or uniform)."""
        if not self.modelled:
            return np.empty(0)
        if model is None or not math.isfinite(donor_score):
            return np.array([self.rng.random() for _ in self.modelled])
        from pbtune.pbt.pb2_gp import propose

        t_next = (iteration + self.settings.perturbation_interval) / \
            self.settings.perturbation_interval
        fixed = np.concatenate([[t_next], self._scale_context([donor_score])[0]])
        stacked = np.vstack(pending) if pending else np.empty((0, len(self.modelled)))
        return propose(model, fixed, stacked, self.rng.getrandbits(32))

    def get_state(self) -> dict[str, Any]:
        """RNG, rows, the last boundary and the next interval's baselines (JSON data)."""
        return {**super().get_state(), "rows": [list(r) for r in self.rows],
                "last_iteration": self.last_iteration, "baselines": dict(self.baselines)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`get_state` (also after a JSON round trip)."""
        super().set_state(state)
        try:
            rows = [[float(v) for v in row] for row in state["rows"]]
            last = state["last_iteration"]
            baselines = {str(k): None if v is None else float(v)
                         for k, v in state["baselines"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"PB2 policy state is malformed ({exc}); was it saved by pbtune?"
                             ) from exc
        self.rows, self.baselines = rows, baselines
        self.last_iteration = None if last is None else int(last)


def _finite(value: float) -> float | None:
    """``value`` if finite, else None (NaN/inf never enter the model or the state)."""
    return float(value) if math.isfinite(value) else None
