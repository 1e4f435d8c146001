"""Every registered policy through the same contract: a new policy is tested by registering it.

Deterministic given a seed, resumable from its JSON state with identical later decisions,
decisions only at boundaries, about scored trials only, configs with the donor's keys.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from pbtune.pbt import POLICIES, Decision, PBTSettings, create_policy

MUTATIONS = {"lr": {"loguniform": [1e-4, 1e-1]}, "wd": {"uniform": [0.0, 0.1]},
             "bs": [16, 32, 64]}
SETTINGS = PBTSettings(perturbation_interval=2, hyperparam_mutations=MUTATIONS)
ITERATIONS = range(1, 10)  # boundaries at 2, 4, 6, 8; decide is called at every iteration


def start(n: int = 6) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    rng = random.Random(11)
    configs = {f"t{i:02d}": {"lr": 10 ** rng.uniform(-4, -1), "wd": rng.uniform(0, 0.1),
                             "bs": rng.choice([16, 32, 64]), "seed": i} for i in range(n)}
    return configs, {tid: 0.0 for tid in configs}


def step(configs: dict[str, dict[str, Any]], scores: dict[str, float], iteration: int) -> None:
    """One training iteration: a smooth gain in the hyperparameters; t03 diverges at 5."""
    for tid, c in sorted(configs.items()):
        scores[tid] += 1 - (math.log10(c["lr"]) + 2) ** 2 / 4 - 10 * c["wd"] + c["bs"] / 640
    if iteration == 5:
        scores["t03"] = math.nan


def drive(policy: Any, iterations: range, configs: dict[str, dict[str, Any]],
          scores: dict[str, float]) -> list[tuple[int, list[Decision]]]:
    """Call ``decide`` at every iteration, apply what comes back as the engine does."""
    out = []
    for it in iterations:
        step(configs, scores, it)
        decisions = policy.decide(it, dict(scores), {t: dict(c) for t, c in configs.items()})
        for d in decisions:
            scores[d.target] = scores[d.donor]
            configs[d.target] = dict(d.new_config)
        out.append((it, decisions))
    return out


def run(name: str, seed: int) -> list[tuple[int, list[Decision]]]:
    configs, scores = start()
    return drive(create_policy(name, SETTINGS, "max", seed), ITERATIONS, configs, scores)


@pytest.fixture(params=POLICIES.names())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_same_seed_same_decisions(name: str) -> None:
    assert run(name, 7) == run(name, 7)


def test_state_round_trip_mid_run_gives_identical_later_decisions(name: str) -> None:
    uninterrupted = run(name, 7)
    configs, scores = start()
    policy = create_policy(name, SETTINGS, "max", 7)
    before = drive(policy, range(1, 5), configs, scores)
    state = json.loads(json.dumps(policy.get_state(), allow_nan=False))
    restored = create_policy(name, SETTINGS, "max", 12345)
    restored.set_state(state)
    after = drive(restored, range(5, 10), configs, scores)
    assert before + after == uninterrupted


def test_decisions_only_on_boundaries(name: str) -> None:
    policy = create_policy(name, SETTINGS, "max", 0)
    for it, decisions in run(name, 0):
        if not policy.is_boundary(it):
            assert decisions == [], it
    assert not policy.is_boundary(0) and not policy.is_boundary(3)
    if policy.perturbs:
        assert policy.is_boundary(2) and any(ds for _, ds in run(name, 0))
    else:
        assert not any(policy.is_boundary(it) for it in range(50))


def test_decisions_are_about_scored_trials_and_keep_the_config_keys(name: str) -> None:
    configs, _ = start()
    for it, decisions in run(name, 3):
        targets = [d.target for d in decisions]
        assert len(targets) == len(set(targets))
        for d in decisions:
            assert {d.target, d.donor} <= set(configs) and d.target != d.donor
            assert d.target_iteration == d.donor_iteration == it
            assert set(d.new_config) == set(d.old_config) == set(configs[d.donor])
            assert d.new_config["bs"] in (16, 32, 64)
            assert 1e-4 <= d.new_config["lr"] <= 1e-1 and 0.0 <= d.new_config["wd"] <= 0.1


def test_a_diverged_trial_is_replaced_at_the_next_boundary(name: str) -> None:
    policy = create_policy(name, SETTINGS, "max", 0)
    if not policy.perturbs:
        pytest.skip(f"{name} never perturbs")
    at_six = dict(run(name, 0))[6]
    assert "t03" in {d.target for d in at_six}  # NaN since iteration 5: the worst
