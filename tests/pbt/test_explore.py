"""explore(): lists, domains, nesting, clipping, custom functions, and RNG discipline."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from pbtune.pbt import Choice, LogUniform, RandInt, Uniform, explore, load_callable


class ScriptedRng(random.Random):
    """A Random whose ``random()`` and ``choice()`` return scripted values, to force a branch."""

    def __init__(self, randoms: list[float], choices: list[Any]) -> None:
        super().__init__(0)
        self.randoms, self.choices = list(randoms), list(choices)
        self.choice_args: list[Any] = []

    def random(self) -> float:
        return self.randoms.pop(0)

    def choice(self, seq: Any) -> Any:
        self.choice_args.append(list(seq))
        return self.choices.pop(0)


def double_lr(config: dict[str, Any]) -> dict[str, Any]:
    """A custom explore function resolved by import path in the tests below."""
    return {**config, "lr": config["lr"] * 2, "touched": True}


def returns_none(config: dict[str, Any]) -> None:
    return None


NOT_CALLABLE = 42
LIST = [16, 32, 64, 128]


@pytest.mark.parametrize(
    ("current", "shift", "expected"),
    [(64, 1, 128), (64, -1, 32), (128, 1, 128), (16, -1, 16)],
)
def test_list_neighbour_shift_is_clamped_at_the_ends(current: int, shift: int, expected: int):
    rng = ScriptedRng([0.9], [shift])
    assert explore({"bs": current}, {"bs": LIST}, rng) == {"bs": expected}
    assert rng.choice_args == [[-1, 1]]


def test_list_resamples_below_the_probability() -> None:
    rng = ScriptedRng([0.1], [16])
    assert explore({"bs": 64}, {"bs": LIST}, rng, resample_probability=0.25) == {"bs": 16}
    assert rng.choice_args == [LIST]


def test_list_resamples_a_value_not_in_the_list() -> None:
    rng = ScriptedRng([0.99], [32])
    assert explore({"bs": 50}, {"bs": LIST}, rng) == {"bs": 32}
    assert rng.choice_args == [LIST]


@pytest.mark.parametrize(("factor", "expected"), [(1.2, 0.012), (0.8, 0.008)])
def test_domain_value_is_multiplied_by_a_factor(factor: float, expected: float) -> None:
    rng = ScriptedRng([0.9], [factor])
    out = explore({"lr": 0.01}, {"lr": {"loguniform": [1e-4, 1e-1]}}, rng)
    assert out["lr"] == pytest.approx(expected)
    assert rng.choice_args == [[1.2, 0.8]]


def test_int_values_are_cast_back_to_int() -> None:
    out = explore({"n": 7}, {"n": {"randint": [1, 100]}}, ScriptedRng([0.9], [0.8]))
    assert out == {"n": 6} and type(out["n"]) is int  # round(5.6), as Ray 2.60


def test_domain_resamples_below_the_probability() -> None:
    rng = random.Random(1)
    outs = [
        explore({"lr": 0.5}, {"lr": Uniform(0, 1)}, rng, resample_probability=1.0) for _ in "x" * 50
    ]
    values = {o["lr"] for o in outs}
    assert len(values) == 50 and not values & {0.6, 0.4}
    assert all(0 <= v <= 1 for v in values)


def test_choice_domain_perturb_means_resample() -> None:
    rng = ScriptedRng([0.99], ["b"])
    assert explore({"opt": "a"}, {"opt": Choice(("a", "b"))}, rng) == {"opt": "b"}
    assert rng.choice_args == [["a", "b"]]


def test_clip_keeps_values_inside_the_domain_and_off_lets_them_leave() -> None:
    mutations = {"lr": LogUniform(1e-4, 1e-1), "n": RandInt(1, 10)}
    config = {"lr": 0.09, "n": 9}
    unclipped = explore(config, mutations, ScriptedRng([0.9, 0.9], [1.2, 1.2]), clip=False)
    assert unclipped["lr"] == pytest.approx(0.108) and unclipped["n"] == 11
    clipped = explore(config, mutations, ScriptedRng([0.9, 0.9], [1.2, 1.2]), clip=True)
    assert clipped == {"lr": 0.1, "n": 9}  # RandInt upper is exclusive


def test_int_value_clipped_by_a_float_domain_stays_an_int_in_bounds() -> None:
    out = explore({"w": 9}, {"w": Uniform(0.5, 9.5)}, ScriptedRng([0.9], [1.2]))
    assert out == {"w": 9} and type(out["w"]) is int


def test_bool_stays_bool() -> None:
    out = explore({"flag": True}, {"flag": Uniform(0, 1)}, ScriptedRng([0.9], [0.8]))
    assert out == {"flag": True}


def test_nested_dicts_recurse_and_input_is_untouched() -> None:
    config = {"opt": {"lr": 0.01, "name": "sgd"}, "bs": 64, "other": [1, 2]}
    before = copy.deepcopy(config)
    mutations = {"opt": {"lr": {"uniform": [0, 1]}}, "bs": LIST}
    out = explore(config, mutations, ScriptedRng([0.9, 0.9], [0.8, 1]))
    assert out == {"opt": {"lr": pytest.approx(0.008), "name": "sgd"}, "bs": 128, "other": [1, 2]}
    assert config == before
    out["other"].append(3)
    assert config["other"] == [1, 2]  # a deep copy, not shared


def test_missing_key_is_resampled() -> None:
    out = explore({}, {"lr": Uniform(2, 3)}, random.Random(0), resample_probability=0.0)
    assert 2 <= out["lr"] <= 3


def test_zero_arg_callable_is_a_sampler() -> None:
    rng = ScriptedRng([0.1], [])
    assert explore({"x": 1.0}, {"x": lambda: 5.0}, rng) == {"x": 5.0}


def test_custom_explore_fn_by_import_path_runs_last() -> None:
    fn = load_callable(f"{__name__}:double_lr")
    out = explore(
        {"lr": 0.01}, {"lr": Uniform(0, 1)}, ScriptedRng([0.9], [1.2]), custom_explore_fn=fn
    )
    assert out == {"lr": pytest.approx(0.024), "touched": True}
    assert load_callable(f"{__name__}.double_lr") is double_lr


def test_custom_explore_fn_must_return_a_dict() -> None:
    with pytest.raises(
        ValueError, match="custom_explore_fn must return the config dict, got NoneType"
    ):
        explore({"bs": 64}, {"bs": LIST}, random.Random(0), custom_explore_fn=returns_none)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz' (ModuleNotFoundError"),
        (f"{__name__}:missing", f"{__name__!r} has no attribute 'missing'"),
        (f"{__name__}:NOT_CALLABLE", "is a int, not a callable"),
        ("nodots", "'nodots' is not an import path"),
        ("", "expected an import path string"),
    ],
)
def test_load_callable_errors(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^custom_explore_fn: ") as info:
        load_callable(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("mutations", "config", "message"),
    [
        ({"lr": 0.1}, {"lr": 0.1}, "lr: cannot explore 0.1"),
        ({"opt": {"lr": Uniform(0, 1)}}, {"opt": 3}, "opt: {lr: ...} is not a domain"),
        ({"lr": Uniform(0, 1)}, {"lr": "high"}, "lr: cannot multiply the non-numeric value 'high'"),
    ],
)
def test_explore_errors(mutations: Any, config: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        explore(config, mutations, random.Random(0), resample_probability=0.0)


def test_explore_is_reproducible_and_ignores_global_random() -> None:
    mutations = {"lr": {"loguniform": [1e-4, 1e-1]}, "bs": LIST, "m": {"uniform": [0, 1]}}
    config = {"lr": 0.01, "bs": 64, "m": 0.5}
    random.seed(1)
    a = [explore(config, mutations, rng) for rng in [random.Random(3)] for _ in range(20)]
    random.seed(2)
    b = [explore(config, mutations, rng) for rng in [random.Random(3)] for _ in range(20)]
    assert a == b
    assert len({(x["lr"], x["bs"], x["m"]) for x in a}) > 10
