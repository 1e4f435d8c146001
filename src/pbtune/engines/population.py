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


def dry_run(cfg: Any, sample: int = 8) -> None:
    """Run the policy's explore once on the initial population, with a throwaway RNG.

    Why: a mutation that cannot apply to the sampled values (a non-numeric value to multiply, an
    unknown domain read as a nested mapping) or a ``custom_explore_fn`` that raises or returns a
    non-dict would otherwise fail at the first boundary, after training has started. Each of the
    first ``sample`` trials is made a donor once (scores rotated), so its config is explored.

    Raises:
        ValueError: the explore step fails; the message names the problem.
    """
    from pbtune.engines.core.settings import policy_name
    from pbtune.pbt import create_policy
    from pbtune.workloads import get

    check = get(cfg.workload).check_config
    name = policy_name(cfg)
    trials = initial_trials(cfg)
    for t in trials:
        try:
            check(t.config)
        except ValueError as exc:
            raise ValueError(f"trial {t.trial_id}'s sampled config cannot train: {exc} "
                             "(check param_space)") from None
    if name == "random" or len(trials) < 2:
        return
    policy = create_policy(name, policy_settings(cfg), cfg.mode, cfg.seed + 1)
    interval = cfg.pbt.perturbation_interval
    boundary = max(interval, -(-cfg.pbt.burn_in // interval) * interval)
    configs = {t.trial_id: t.config for t in trials}
    n = len(trials)
    for r in range(min(n, sample)):
        scores = {t.trial_id: float((i + r) % n) for i, t in enumerate(trials)}
        for decision in policy.decide(boundary, scores, configs):
            if not isinstance(decision.new_config, dict):
                raise ValueError(f"exploring gives a {type(decision.new_config).__name__}, "
                                 "not a mapping (check pbt.custom_explore_fn)")
            try:
                check(decision.new_config)
            except ValueError as exc:
                raise ValueError(f"an explored config cannot train: {exc} (check "
                                 "pbt.hyperparam_mutations)") from None
