"""The PBT policy: when to perturb, whom to replace, whom to copy, and with which config.

Why: the decision logic is pure (no Ray, no torch, no clock), so an engine can call it at each
perturbation boundary and the same seed and scores always give the same decisions. Unlike Ray,
which ranks trials by whatever each last reported, the engine calls :meth:`PBTPolicy.decide` only
once every live trial has a score at the *same* iteration (ranking at equal progress).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pbtune.pbt.base import POLICIES, Decision, Policy
from pbtune.pbt.domains import is_domain
from pbtune.pbt.explore import explore, load_callable
from pbtune.pbt.space import parse_space


def _quantile_size(n: int, quantile_fraction: float) -> int:
    """Trials in each quantile of ``n``, as Ray sizes them; never decreases as ``n`` grows."""
    if not 0 < quantile_fraction <= 0.5:
        raise ValueError(f"quantile_fraction must be in (0, 0.5], got {quantile_fraction!r}")
    return 0 if n < 2 else min(math.ceil(n * quantile_fraction), n // 2)


def _ranked(scores: Mapping[str, float]) -> list[str]:
    """Ids worst to best: NaN first, then by score, ties broken by id (smaller ranks lower)."""

    def rank(trial_id: str) -> tuple[bool, float, str]:
        score = float(scores[trial_id])
        return (not math.isnan(score), 0.0 if math.isnan(score) else score, trial_id)

    return sorted(scores, key=rank)


def quantile_split(
    scores: Mapping[str, float], quantile_fraction: float
) -> tuple[list[str], list[str]]:
    """The (lower, upper) quantiles of trial ids, each ordered worst to best.

    Sizes follow Ray: ``k = ceil(n * quantile_fraction)``, capped at ``floor(n / 2)``; both are
    empty when ``n < 2``. Unlike Ray, which drops NaN trials, a NaN score ranks as the worst, so a
    diverged trial is the first to be replaced. Ties are broken by trial id (the smaller id ranks
    lower), so the split never depends on dict order.

    Args:
        scores: trial id → score, already sign-adjusted so that higher is better.
        quantile_fraction: in (0, 0.5].
    """
    n = len(scores)
    k = _quantile_size(n, quantile_fraction)
    if k == 0:
        return [], []
    ordered = _ranked(scores)
    return ordered[:k], ordered[n - k :]


def safe_from_exploit(
    scores: Mapping[str, float], pending: int, quantile_fraction: float
) -> list[str]:
    """Ids in ``scores`` that no score of the ``pending`` trials still to report can put in the
    lower quantile, worst to best.

    Why: an engine that ranks at equal progress otherwise holds every trial at the boundary until
    the last one arrives, and the workers idle meanwhile. A trial that is safe can go on at once:
    the decisions at the boundary will not touch it (it may still be a donor, so the engine keeps
    its state at the boundary). The worst case for a trial is that every pending trial ranks above
    it and the quantile has its largest size, ``k`` of ``len(scores) + pending`` trials; it is safe
    when at least ``k`` known trials rank below it. A pending trial that drops out of the ranking
    only shrinks ``k``.

    Args:
        scores: trial id → score at the boundary, sign-adjusted (higher is better; NaN is worst).
        pending: trials that may still join this boundary's ranking.
        quantile_fraction: in (0, 0.5].
    """
    if pending < 0:
        raise ValueError(f"pending must be >= 0, got {pending}")
    k = _quantile_size(len(scores) + pending, quantile_fraction)
    return [tid for tid in _ranked(scores)[k:] if not math.isnan(float(scores[tid]))]


@dataclass(frozen=True, kw_only=True)
class PBTSettings:
    """What the user configures for PBT (the ``pbt:`` section of the experiment YAML).

    Attributes:
        perturbation_interval: iterations between perturbation boundaries (> 0).
        burn_in: iterations before the first perturbation may happen (>= 0).
        quantile_fraction: fraction replaced and fraction copied from, in (0, 0.5].
        resample_probability: chance of resampling instead of perturbing, in [0, 1].
        perturbation_factors: factors continuous values are multiplied by (each > 0).
        hyperparam_mutations: key → domain spec / list / nested mapping (non-empty).
        custom_explore_fn: ``"package.module:function"`` (or the function itself) applied to
            each explored config, or None.
        clip: clamp explored values into their domain's bounds.
    """

    perturbation_interval: int
    burn_in: int = 0
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    perturbation_factors: tuple[float, ...] = (1.2, 0.8)
    hyperparam_mutations: Mapping[str, Any]
    custom_explore_fn: str | Callable[[dict[str, Any]], Any] | None = None
    clip: bool = True

    def __post_init__(self) -> None:
        def bad(message: str) -> ValueError:
            return ValueError(f"pbt.{message}")

        interval = self.perturbation_interval
        if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
            raise bad(f"perturbation_interval must be an integer > 0, got {interval!r}")
        if isinstance(self.burn_in, bool) or not isinstance(self.burn_in, int) or self.burn_in < 0:
            raise bad(f"burn_in must be an integer >= 0, got {self.burn_in!r}")
        if not 0 < self.quantile_fraction <= 0.5:
            raise bad(f"quantile_fraction must be in (0, 0.5], got {self.quantile_fraction!r}")
        if not 0 <= self.resample_probability <= 1:
            raise bad(f"resample_probability must be in [0, 1], got {self.resample_probability!r}")
        factors = self.perturbation_factors
        if not factors or not all(
            isinstance(f, int | float) and not isinstance(f, bool) and 0 < f < math.inf
            for f in factors
        ):
            raise bad(f"perturbation_factors must be positive numbers, got {factors!r}")
        if not isinstance(self.hyperparam_mutations, Mapping) or not self.hyperparam_mutations:
            raise bad("hyperparam_mutations must name at least one key to explore, e.g. lr: ...")
        _check_mutations(parse_space(self.hyperparam_mutations), "pbt.hyperparam_mutations")


def _check_mutations(parsed: Mapping[str, Any], prefix: str) -> None:
    """Reject constants in the mutations now, not at the first boundary hours into a run."""
    for key, value in parsed.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            if not value:
                raise ValueError(f"{name}: an empty mapping has nothing to explore")
            _check_mutations(value, name)
        elif not (isinstance(value, list) or is_domain(value) or callable(value)):
            raise ValueError(
                f"{name}: {value!r} is a constant; give a domain such as "
                "{loguniform: [1e-4, 0.1]} or a list of values"
            )


@POLICIES.register("pbt")
class PBTPolicy(Policy):
    """Deterministic PBT decisions from settings, a mode and a seed (Jaderberg et al. 2017).

    Truncation selection: the bottom quantile copies a random top-quantile donor and explores
    its config (:func:`~pbtune.pbt.explore.explore`). Every random draw comes from ``self.rng``;
    :meth:`get_state` / :meth:`set_state` carry it across a resume so the continued run makes the
    decisions an uninterrupted run would have.
    """

    def __init__(self, settings: PBTSettings, mode: str, seed: int) -> None:
        super().__init__(settings, mode, seed)
        self.mutations = parse_space(settings.hyperparam_mutations)
        fn = settings.custom_explore_fn
        self.custom_explore_fn: Callable[[dict[str, Any]], Any] | None = (
            load_callable(fn) if isinstance(fn, str) else fn
        )

    def decide(
        self, iteration: int, scores: Mapping[str, float], configs: Mapping[str, Mapping[str, Any]]
    ) -> list[Decision]:
        """Exploit and explore decisions for a population that has all reached ``iteration``.

        Draws: for each lower-quantile trial in sorted id order, one ``rng.choice`` of the donor
        among the sorted upper-quantile ids, then the draws of :func:`explore`.

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
        lower, upper = quantile_split(adjusted, self.settings.quantile_fraction)
        donors = sorted(upper)
        decisions = []
        for target in sorted(lower):
            donor = self.rng.choice(donors)
            old_config = copy.deepcopy(dict(configs[donor]))
            new_config = explore(
                old_config,
                self.mutations,
                self.rng,
                resample_probability=self.settings.resample_probability,
                perturbation_factors=self.settings.perturbation_factors,
                clip=self.settings.clip,
                custom_explore_fn=self.custom_explore_fn,
            )
            decisions.append(Decision(target, donor, iteration, iteration, old_config, new_config))
        return decisions
