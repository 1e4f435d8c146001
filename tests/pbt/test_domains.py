"""Domains and search-space parsing: sampling stays in bounds, clip, spec round trips, errors."""

from __future__ import annotations

import math
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
    parse_domain,
    parse_space,
    sample_config,
)

SPECS: list[tuple[dict[str, Any], Any]] = [
    ({"uniform": [0, 1]}, Uniform(0.0, 1.0)),
    ({"loguniform": [1e-4, 1e-1]}, LogUniform(1e-4, 1e-1)),
    ({"loguniform": [1, 1024, 2]}, LogUniform(1.0, 1024.0, 2.0)),
    ({"quniform": [0, 1, 0.1]}, QUniform(0.0, 1.0, 0.1)),
    ({"qloguniform": [8, 512, 8]}, QLogUniform(8.0, 512.0, 8.0)),
    ({"randint": [1, 10]}, RandInt(1, 10)),
    ({"lograndint": [1, 1024]}, LogRandInt(1, 1024)),
    ({"choice": [32, 64, 128]}, Choice((32, 64, 128))),
    ({"randn": [0, 1]}, RandN(0.0, 1.0)),
]


@pytest.mark.parametrize(("spec", "expected"), SPECS, ids=[next(iter(s)) for s, _ in SPECS])
def test_parse_and_to_spec_round_trip(spec: dict[str, Any], expected: Any) -> None:
    domain = parse_domain(spec, name="x")
    assert domain == expected
    assert parse_domain(domain.to_spec(), name="x") == domain


@pytest.mark.parametrize(("spec", "domain"), SPECS[:-1], ids=[next(iter(s)) for s, _ in SPECS[:-1]])
def test_samples_lie_within_bounds(spec: dict[str, Any], domain: Any) -> None:
    rng = random.Random(7)
    values = [domain.sample(rng) for _ in range(500)]
    if isinstance(domain, Choice):
        assert set(values) == set(domain.categories)
        return
    lo, hi = domain.bounds
    assert all(lo <= v <= hi for v in values)
    assert len(set(values)) > 5  # really random, not a constant
    if isinstance(domain, RandInt | LogRandInt):
        assert all(isinstance(v, int) for v in values)
        assert max(values) < domain.upper  # upper is exclusive
    if isinstance(domain, RandInt):
        assert max(values) == domain.upper - 1
    if isinstance(domain, QUniform | QLogUniform):
        assert all(math.isclose(v / domain.q, round(v / domain.q)) for v in values)


def test_quantized_values_have_no_float_noise() -> None:
    values = {QUniform(0, 1, 0.1).sample(random.Random(s)) for s in range(200)}
    assert values <= {round(k * 0.1, 1) for k in range(11)}
    assert 0.3 in values or 0.7 in values


def test_loguniform_spreads_over_decades() -> None:
    rng = random.Random(0)
    values = [LogUniform(1e-4, 1e-1).sample(rng) for _ in range(3000)]
    below_1e3 = sum(v < 1e-3 for v in values) / len(values)
    assert 0.28 < below_1e3 < 0.39  # one of three decades; uniform would put ~1% there


def test_randn_sample_and_identity_clip() -> None:
    rng = random.Random(3)
    values = [RandN(5.0, 2.0).sample(rng) for _ in range(2000)]
    assert abs(sum(values) / len(values) - 5.0) < 0.2
    assert RandN(0, 1).clip(1e9) == 1e9 and RandN(0, 1).bounds is None


@pytest.mark.parametrize(
    ("domain", "value", "expected"),
    [
        (Uniform(0, 1), 1.5, 1.0),
        (Uniform(0, 1), -2, 0.0),
        (Uniform(0, 1), 0.25, 0.25),
        (LogUniform(1e-4, 1e-1), 0.5, 1e-1),
        (LogUniform(1e-4, 1e-1), 1e-6, 1e-4),
        (QUniform(0, 1, 0.1), 0.33, 0.3),
        (QUniform(0.05, 1, 0.1), 0.0, 0.1),  # lowest grid point inside the bounds
        (QLogUniform(8, 512, 8), 1000, 512.0),
        (RandInt(1, 10), 10, 9),  # upper exclusive
        (RandInt(1, 10), -3, 1),
        (LogRandInt(1, 1024), 5000, 1023),
        (Choice((32, 64, 128)), 64, 64),
        (Choice((32, 64, 128)), 100, 128),
        (Choice(("a", "b")), "z", "z"),
    ],
)
def test_clip(domain: Any, value: Any, expected: Any) -> None:
    assert domain.clip(value) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"logunifrom": [1e-4, 0.1]}, "lr: unknown domain 'logunifrom'; valid: choice, lograndint"),
        ({"loguniform": [0, 0.1]}, "lr: loguniform needs 0 < lower < upper, got [0, 0.1]"),
        ({"loguniform": [1, 2, 1]}, "lr: loguniform needs base > 0 and != 1, got 1.0"),
        ({"uniform": [1, 0]}, "lr: uniform needs lower < upper, got [1, 0]"),
        ({"uniform": [1]}, "lr: uniform needs [lower, upper], got [1]"),
        ({"uniform": 3}, "lr: uniform needs [lower, upper], got 3"),
        ({"uniform": ["a", 1]}, "lr: uniform arguments must be finite numbers, got ['a', 1]"),
        ({"uniform": [0, math.inf]}, "lr: uniform arguments must be finite numbers"),
        ({"uniform": [True, 2]}, "lr: uniform arguments must be finite numbers"),
        ({"quniform": [0, 1]}, "lr: quniform needs [lower, upper, q], got [0, 1]"),
        ({"quniform": [0, 1, 0]}, "lr: quniform needs q > 0, got [0, 1, 0]"),
        ({"quniform": [0.1, 0.2, 1]}, "lr: quniform has no positive multiple of q=1 in [0.1, 0.2]"),
        ({"qloguniform": [-1, 1, 0.1]}, "lr: qloguniform needs 0 < lower < upper"),
        ({"randint": [1.5, 10]}, "lr: randint needs integer bounds, got [1.5, 10]"),
        ({"randint": [5, 5]}, "lr: randint needs lower < upper (upper is exclusive), got [5, 5]"),
        ({"lograndint": [0, 10]}, "lr: lograndint needs 0 < lower < upper, got [0, 10]"),
        ({"choice": []}, "lr: choice needs a non-empty list, got []"),
        ({"choice": "abc"}, "lr: choice needs a non-empty list, got 'abc'"),
        ({"randn": [0, 0]}, "lr: randn needs sd > 0, got [0, 0]"),
        ([], "lr: an empty list has nothing to sample"),
    ],
)
def test_parse_errors_are_one_precise_line(spec: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_domain(spec, name="lr")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unknown_domain_suggests_the_fix() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'loguniform'\?"):
        parse_domain({"logunifrom": [1e-4, 0.1]}, name="lr")


@pytest.mark.parametrize("constant", [3, 0.1, "adam", True, None, {"name": "adam"}])
def test_constants_pass_through_unchanged(constant: Any) -> None:
    assert parse_domain(constant, name="x") == constant


def test_plain_list_is_kept_as_a_list() -> None:
    assert parse_domain((1, 2, 3), name="x") == [1, 2, 3]
    assert parse_domain(["a"], name="x") == ["a"]


def test_parse_space_recurses_and_names_nested_keys() -> None:
    parsed = parse_space({"opt": {"lr": {"uniform": [0, 1]}, "name": "sgd"}, "bs": [1, 2]})
    assert parsed == {"opt": {"lr": Uniform(0, 1), "name": "sgd"}, "bs": [1, 2]}
    with pytest.raises(ValueError, match=r"^model\.opt\.lr: loguniform needs 0 < lower"):
        parse_space({"model": {"opt": {"lr": {"loguniform": [-1, 1]}}}})


def test_sample_config_is_reproducible_and_complete() -> None:
    space = {
        "lr": {"loguniform": [1e-4, 1e-1]},
        "bs": [32, 64, 128],
        "opt": {"momentum": {"uniform": [0.8, 0.99]}, "name": "sgd"},
        "epochs": 3,
    }
    first = sample_config(space, random.Random(11))
    assert first == sample_config(space, random.Random(11))
    assert set(first) == {"lr", "bs", "opt", "epochs"}
    assert 1e-4 <= first["lr"] <= 1e-1 and first["bs"] in (32, 64, 128)
    assert 0.8 <= first["opt"]["momentum"] <= 0.99 and first["opt"]["name"] == "sgd"
    assert first["epochs"] == 3
    configs = [sample_config(space, random.Random(s)) for s in range(20)]
    assert len({c["lr"] for c in configs}) == 20
    assert {c["bs"] for c in configs} == {32, 64, 128}


def test_sample_config_uses_only_the_given_rng() -> None:
    random.seed(0)
    a = sample_config({"x": {"uniform": [0, 1]}, "y": [1, 2, 3]}, random.Random(5))
    random.seed(1)
    b = sample_config({"x": {"uniform": [0, 1]}, "y": [1, 2, 3]}, random.Random(5))
    assert a == b
