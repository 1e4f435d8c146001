"""Quantile split, settings validation, and the PBT policy's deterministic decisions."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from pbtune.pbt import Decision, PBTPolicy, PBTSettings, quantile_split, safe_from_exploit

MUTATIONS = {"lr": {"loguniform": [1e-4, 1e-1]}, "bs": [16, 32, 64, 128]}


def settings(**overrides: Any) -> PBTSettings:
    kwargs: dict[str, Any] = {"perturbation_interval": 4, "hyperparam_mutations": MUTATIONS}
    return PBTSettings(**{**kwargs, **overrides})


def population(n: int) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    scores = {f"t{i:03d}": float(i) for i in range(n)}
    configs = {tid: {"lr": 10 ** -(1 + i % 3), "bs": 32, "seed": i} for i, tid in enumerate(scores)}
    return scores, configs


def ray_quantile_size(n: int, q: float) -> int:
    """Ray's ``PopulationBasedTraining._quantiles`` size rule, written out independently."""
    if n <= 1:
        return 0
    k = math.ceil(n * q)
    return math.floor(n / 2) if k > n / 2 else k


@pytest.mark.parametrize("q", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("n", range(2, 21))
def test_quantile_sizes_match_ray(n: int, q: float) -> None:
    scores = {f"t{i:02d}": float((i * 7) % n) for i in range(n)}
    lower, upper = quantile_split(scores, q)
    k = ray_quantile_size(n, q)
    assert len(lower) == len(upper) == k
    ranked = sorted(scores, key=lambda t: scores[t])
    assert set(lower) == set(ranked[:k]) and set(upper) == set(ranked[n - k :])


def test_quantile_split_of_fewer_than_two_is_empty() -> None:
    assert quantile_split({}, 0.25) == ([], [])
    assert quantile_split({"a": 1.0}, 0.5) == ([], [])


def test_quantile_ties_are_broken_by_trial_id_regardless_of_dict_order() -> None:
    forward = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    backward = dict(reversed(forward.items()))
    assert quantile_split(forward, 0.5) == quantile_split(backward, 0.5) == (["a", "b"], ["c", "d"])


@pytest.mark.parametrize("q", [0.1, 0.25, 0.5])
def test_safe_trials_never_end_in_the_lower_quantile(q: float) -> None:
    """Whatever the pending trials score (ties, NaN, or dropping out of the ranking), a trial
    called safe is never replaced; a trial not called safe is replaced for some outcome."""
    rng = random.Random(7)
    for _ in range(400):
        n_known, n_pending = rng.randint(0, 9), rng.randint(0, 6)
        pool = [0.0, 1.0, 2.0, math.nan]  # few values: plenty of ties
        known = {f"k{i}": rng.choice(pool) for i in range(n_known)}
        safe = safe_from_exploit(known, n_pending, q)
        assert all(not math.isnan(known[t]) for t in safe)
        for _outcome in range(12):
            final = dict(known)
            for j in range(n_pending):
                if rng.random() < 0.8:  # else: it errored for good and is not ranked
                    final[f"p{j}"] = rng.choice([*pool, 9.0])
            lower, _upper = quantile_split(final, q)
            assert not set(safe) & set(lower), (known, n_pending, final, safe, lower)
        # Tight: every pending trial ranks above all known ones (highest score, largest ids).
        worst_case = {**known, **{f"z{j}": 100.0 for j in range(n_pending)}}
        lower, _upper = quantile_split(worst_case, q)
        unsafe = {t for t in known if t not in safe and not math.isnan(known[t])}
        assert unsafe <= set(lower)


def test_safe_from_exploit_examples() -> None:
    scores = {"a": 1.0, "b": 2.0, "c": 3.0, "d": math.nan}
    assert safe_from_exploit(scores, 0, 0.25) == ["a", "b", "c"]  # k = 1: only d is replaced
    assert safe_from_exploit(scores, 4, 0.25) == ["b", "c"]  # k = 2 of 8
    assert safe_from_exploit({"a": 1.0}, 0, 0.5) == ["a"]  # a population of one perturbs nobody
    with pytest.raises(ValueError, match="pending"):
        safe_from_exploit(scores, -1, 0.25)
    with pytest.raises(ValueError, match="quantile_fraction"):
        safe_from_exploit(scores, 0, 0.75)


def test_nan_scores_rank_worst() -> None:
    scores = {"a": 5.0, "b": math.nan, "c": -100.0, "d": 1.0, "e": math.nan, "f": 3.0}
    lower, upper = quantile_split(scores, 0.5)
    assert lower == ["b", "e", "c"] and upper == ["d", "f", "a"]


@pytest.mark.parametrize("q", [0.0, 0.51, -0.1])
def test_quantile_fraction_is_validated(q: float) -> None:
    with pytest.raises(ValueError, match="quantile_fraction must be in"):
        quantile_split({"a": 1.0, "b": 2.0}, q)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantile_fraction": 0.6}, "pbt.quantile_fraction must be in (0, 0.5], got 0.6"),
        ({"quantile_fraction": 0}, "pbt.quantile_fraction must be in (0, 0.5], got 0"),
        ({"perturbation_interval": 0}, "pbt.perturbation_interval must be an integer > 0, got 0"),
        ({"perturbation_interval": 2.5}, "pbt.perturbation_interval must be an integer > 0"),
        ({"burn_in": -1}, "pbt.burn_in must be an integer >= 0, got -1"),
        ({"resample_probability": 1.5}, "pbt.resample_probability must be in [0, 1], got 1.5"),
        ({"perturbation_factors": (1.2, -0.8)}, "pbt.perturbation_factors must be positive"),
        ({"perturbation_factors": ()}, "pbt.perturbation_factors must be positive"),
        ({"hyperparam_mutations": {}}, "pbt.hyperparam_mutations must name at least one key"),
        ({"hyperparam_mutations": {"lr": 0.1}}, "pbt.hyperparam_mutations.lr: 0.1 is a constant"),
        ({"hyperparam_mutations": {"lr": {"uniform": [1, 0]}}}, "lr: uniform needs lower < upper"),
    ],
)
def test_settings_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        settings(**overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_policy_rejects_bad_mode_and_bad_explore_path() -> None:
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        PBTPolicy(settings(), "maximize", 0)
    with pytest.raises(ValueError, match="custom_explore_fn: cannot import module"):
        PBTPolicy(settings(custom_explore_fn="nope_not_here:fn"), "max", 0)


@pytest.mark.parametrize(
    ("burn_in", "iteration", "expected"),
    [(0, 0, False), (0, 4, True), (0, 6, False), (0, 8, True), (8, 4, False), (8, 8, True),
     (6, 4, False), (6, 8, True)],
)  # fmt: skip
def test_is_boundary(burn_in: int, iteration: int, expected: bool) -> None:
    assert PBTPolicy(settings(burn_in=burn_in), "max", 0).is_boundary(iteration) is expected


def test_decide_replaces_the_lower_quantile_with_upper_donors() -> None:
    scores, configs = population(8)
    decisions = PBTPolicy(settings(), "max", 0).decide(4, scores, configs)
    assert [d.target for d in decisions] == ["t000", "t001"]
    for d in decisions:
        assert isinstance(d, Decision)
        assert d.donor in ("t006", "t007")
        assert d.target_iteration == d.donor_iteration == 4
        assert d.old_config == configs[d.donor]
        assert d.new_config["seed"] == configs[d.donor]["seed"]  # unmutated keys come along
        assert 1e-4 <= d.new_config["lr"] <= 1e-1 and d.new_config["bs"] in (16, 32, 64, 128)


def test_min_mode_replaces_the_highest_scores() -> None:
    scores, configs = population(8)
    decisions = PBTPolicy(settings(), "min", 0).decide(4, scores, configs)
    assert [d.target for d in decisions] == ["t006", "t007"]
    assert {d.donor for d in decisions} <= {"t000", "t001"}


def test_decide_is_empty_off_boundary_or_for_a_lone_trial() -> None:
    scores, configs = population(8)
    assert PBTPolicy(settings(), "max", 0).decide(5, scores, configs) == []
    lone_scores, lone_configs = population(1)
    assert PBTPolicy(settings(), "max", 0).decide(4, lone_scores, lone_configs) == []


def test_decide_requires_a_config_for_every_scored_trial() -> None:
    scores, configs = population(4)
    del configs["t002"]
    with pytest.raises(ValueError, match=r"no config for scored trials \['t002'\]"):
        PBTPolicy(settings(), "max", 0).decide(4, scores, configs)


def run(policy: PBTPolicy, rounds: range) -> list[Decision]:
    scores, configs = population(12)
    out: list[Decision] = []
    for r in rounds:
        out += policy.decide(4 * (r + 1), {k: (v * 7 + r) % 12 for k, v in scores.items()}, configs)
    return out


def test_same_seed_same_decisions_different_seed_different() -> None:
    first = run(PBTPolicy(settings(), "max", 123), range(5))
    assert first == run(PBTPolicy(settings(), "max", 123), range(5))
    assert len(first) == 15
    assert first != run(PBTPolicy(settings(), "max", 124), range(5))


def test_state_round_trip_continues_the_same_sequence() -> None:
    uninterrupted = run(PBTPolicy(settings(), "max", 9), range(6))
    before = PBTPolicy(settings(), "max", 9)
    head = run(before, range(3))
    saved = json.loads(json.dumps(before.get_state()))  # must survive JSON (a run-dir checkpoint)
    resumed = PBTPolicy(settings(), "max", 0)
    resumed.set_state(saved)
    assert head + run(resumed, range(3, 6)) == uninterrupted
    fresh = PBTPolicy(settings(), "max", 0)
    assert head + run(fresh, range(3, 6)) != uninterrupted  # the state really mattered


def test_set_state_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="PBT policy state is malformed"):
        PBTPolicy(settings(), "max", 0).set_state({"rng": 1})


def test_custom_explore_fn_path_is_applied_to_every_decision() -> None:
    policy = PBTPolicy(settings(custom_explore_fn="tests.pbt.test_explore:double_lr"), "max", 0)
    scores, configs = population(4)
    (decision,) = policy.decide(4, scores, configs)
    assert decision.new_config["touched"] is True
