"""Parity with the installed Ray Tune: its domain objects parse, and explore draws like Ray's.

Marked ``slow`` only because importing Ray takes seconds; no Ray instance is started.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pbtune.pbt import (
    Choice,
    LogRandInt,
    LogUniform,
    QLogUniform,
    QUniform,
    RandInt,
    RandN,
    Uniform,
    explore,
    parse_domain,
    parse_space,
)

pytestmark = pytest.mark.slow
tune = pytest.importorskip("ray.tune")
ray_pbt = pytest.importorskip("ray.tune.schedulers.pbt")


def test_ray_tune_domains_are_translated() -> None:
    space = {
        "a": tune.uniform(0, 1),
        "b": tune.loguniform(1e-4, 1e-1),
        "c": tune.quniform(0, 1, 0.1),
        "d": tune.randint(1, 10),
        "e": tune.lograndint(1, 1024),
        "f": tune.choice([1, 2]),
        "g": tune.randn(0, 2),
        "h": tune.qloguniform(8, 512, 8),
    }
    assert parse_space(space) == {
        "a": Uniform(0, 1),
        "b": LogUniform(1e-4, 1e-1),
        "c": QUniform(0, 1, 0.1),
        "d": RandInt(1, 10),
        "e": LogRandInt(1, 1024),
        "f": Choice((1, 2)),
        "g": RandN(0, 2),
        "h": QLogUniform(8, 512, 8),
    }
    with pytest.raises(ValueError, match=r"^q: unsupported Ray Tune domain"):
        parse_domain(tune.qrandint(0, 10, 2), name="q")


@pytest.mark.parametrize("seed", range(25))
def test_explore_draws_exactly_like_ray_without_clip(seed: int) -> None:
    """Lists and factor perturbations consume the same draws as Ray's ``_explore`` on the global
    ``random`` (domain resampling is excluded: Ray samples those from numpy)."""
    config: dict[str, Any] = {"lr": 0.01, "bs": 64, "layers": 3, "opt": {"m": 0.9, "k": "b"}}
    ray_mutations = {
        "lr": tune.loguniform(1e-4, 1e-1),
        "bs": [16, 32, 64, 128],
        "layers": tune.randint(1, 4),
        "opt": {"m": tune.uniform(0.5, 0.99), "k": ["a", "b", "c"]},
    }
    state = random.getstate()
    try:
        random.seed(seed)
        expected, _ = ray_pbt._explore(config, ray_mutations, 0.0, (1.2, 0.8), None)
    finally:
        random.setstate(state)
    ours = explore(config, ray_mutations, random.Random(seed), resample_probability=0.0, clip=False)
    assert ours == expected
    assert type(ours["layers"]) is int


@pytest.mark.parametrize("seed", range(25))
def test_list_resampling_matches_ray(seed: int) -> None:
    config = {"bs": 64, "k": "z"}
    mutations = {"bs": [16, 32, 64, 128], "k": ["a", "b", "c"]}
    state = random.getstate()
    try:
        random.seed(seed)
        expected, _ = ray_pbt._explore(config, mutations, 0.5, (1.2, 0.8), None)
    finally:
        random.setstate(state)
    assert explore(config, mutations, random.Random(seed), resample_probability=0.5) == expected
