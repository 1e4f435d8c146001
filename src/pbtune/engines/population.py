"""The initial population and the PBT policy's settings, shared by both engines.

Why shared: ``pbtune bench`` and the benchmarks compare engines on *the same* population, so the
native engine, the Tune adapter and the benchmark scripts must sample it with one function (same
seed → same configs and trial seeds everywhere).
"""

from __future__ import annotations

import random
from typing import Any

from pbtune.engines.base import Trial
from pbtune.pbt import PBTSettings, parse_space, sample_config


def policy_settings(cfg: Any) -> PBTSettings:
    """The pure policy's settings from a resolved experiment config."""
    pbt = cfg.pbt
    return PBTSettings(
        perturbation_interval=pbt.perturbation_interval,
        burn_in=pbt.burn_in,
        quantile_fraction=pbt.quantile_fraction,
        resample_probability=pbt.resample_probability,
        perturbation_factors=tuple(pbt.perturbation_factors),
        hyperparam_mutations=dict(pbt.hyperparam_mutations),
        custom_explore_fn=pbt.custom_explore_fn,
        clip=pbt.clip,
    )


def initial_trials(cfg: Any) -> list[Trial]:
    """Sample the population from ``param_space`` with an RNG seeded by ``cfg.seed``."""
    rng = random.Random(f"pbtune-init-{cfg.seed}")
    space = parse_space(dict(cfg.param_space))
    trials = []
    for i in range(cfg.population):
        config = sample_config(space, rng)
        trials.append(Trial(trial_id=f"t{i:03d}", config=config, seed=rng.randrange(2**31)))
    return trials
