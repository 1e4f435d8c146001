"""PBT's explore step: perturb or resample a donor's hyperparameters, Ray-compatibly.

Why: Ray Tune's ``PopulationBasedTraining._explore`` defines what users expect from PBT
(factor multiplication, neighbour shifts in lists, resampling with some probability). pbtune
reproduces it on an owned ``random.Random`` so that a seed fixes every decision, and adds one
difference on purpose: ``clip=True`` (the default) keeps explored values inside the declared
domain, because repeated ``* 1.2`` steps otherwise walk a learning rate out of any sane range.
Integer values are cast back with ``int(round(x))``, as Ray 2.60 does.
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pbtune.pbt.domains import Choice, _is_number, is_domain
from pbtune.pbt.space import parse_space

_MISSING = object()


def explore(
    config: Mapping[str, Any],
    mutations: Mapping[str, Any],
    rng: random.Random,
    *,
    resample_probability: float = 0.25,
    perturbation_factors: Sequence[float] = (1.2, 0.8),
    clip: bool = True,
    custom_explore_fn: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """A new config explored from ``config``; ``config`` itself is never modified.

    RNG draws, in order (keys of ``mutations`` in insertion order, nested mappings depth first;
    reproducibility depends on this exact sequence):

    * plain list: one ``rng.random()``; then, if it is below ``resample_probability`` or the
      current value is missing or not in the list, one ``rng.choice(list)``; otherwise one
      ``rng.choice([-1, 1])`` for the neighbour shift (clamped at the ends).
    * Choice domain: one ``rng.random()``, then one ``rng.choice(categories)`` either way
      (an unordered categorical has no "multiply", so perturbing means resampling).
    * other domain or zero-arg callable: one ``rng.random()``; then, if it is below
      ``resample_probability`` or the value is missing, the domain's ``sample`` draws (a callable
      draws from its own RNG); otherwise one ``rng.choice(perturbation_factors)``.
    * ``custom_explore_fn`` runs last and receives no RNG from here.

    Args:
        config: the donor's config.
        mutations: key → Domain / YAML domain spec / plain list / nested mapping / callable.
        rng: the owned RNG every draw comes from.
        resample_probability: chance of resampling instead of perturbing, in [0, 1].
        perturbation_factors: factors to multiply continuous values by.
        clip: clamp numeric results into the domain's bounds (Ray never clips).
        custom_explore_fn: applied to the whole explored config; must return a dict.

    Returns:
        The explored config (a deep copy with mutated keys replaced).

    Raises:
        ValueError: an unsupported mutation, a non-numeric value to multiply, or a
            ``custom_explore_fn`` that does not return a dict.
    """
    parsed = parse_space(mutations)
    new_config = _explore_level(
        config, parsed, rng, resample_probability, tuple(perturbation_factors), clip, ""
    )
    if custom_explore_fn is not None:
        result = custom_explore_fn(new_config)
        if not isinstance(result, dict):
            raise ValueError(
                f"custom_explore_fn must return the config dict, got {type(result).__name__}"
            )
        new_config = result
    return new_config


def _explore_level(
    config: Mapping[str, Any],
    mutations: Mapping[str, Any],
    rng: random.Random,
    probability: float,
    factors: tuple[float, ...],
    clip: bool,
    prefix: str,
) -> dict[str, Any]:
    new_config = copy.deepcopy(dict(config))
    for key, dist in mutations.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        current = config.get(key, _MISSING)
        if isinstance(dist, Mapping):
            if current is _MISSING:
                current = {}
            if not isinstance(current, Mapping):
                from pbtune.pbt.space import DOMAIN_NAMES

                raise ValueError(
                    f"{name}: {{{', '.join(map(str, dist))}: ...}} is not a domain (valid: "
                    f"{', '.join(DOMAIN_NAMES)}) and the config value {current!r} is not a "
                    "nested mapping"
                )
            new_config[key] = _explore_level(current, dist, rng, probability, factors, clip, name)
        elif isinstance(dist, list):
            new_config[key] = _explore_list(current, dist, rng, probability)
        elif is_domain(dist) or (callable(dist) and not isinstance(dist, type)):
            new_config[key] = _explore_domain(name, current, dist, rng, probability, factors, clip)
        else:
            raise ValueError(
                f"{name}: cannot explore {dist!r}; use a domain such as {{loguniform: [1e-4, 0.1]}}"
                ", a list of values, or a nested mapping"
            )
    return new_config


def _explore_list(current: Any, values: list[Any], rng: random.Random, probability: float) -> Any:
    """Ordered categorical: resample, or step to a neighbour (a no-op at either end)."""
    if rng.random() < probability or current is _MISSING or current not in values:
        return rng.choice(values)
    shift = rng.choice([-1, 1])
    index = min(max(values.index(current) + shift, 0), len(values) - 1)
    return values[index]


def _explore_domain(
    name: str,
    current: Any,
    dist: Any,
    rng: random.Random,
    probability: float,
    factors: tuple[float, ...],
    clip: bool,
) -> Any:
    resample = rng.random() < probability or current is _MISSING or isinstance(dist, Choice)
    if resample:
        value = dist.sample(rng) if is_domain(dist) else dist()
    else:
        if not (_is_number(current) or isinstance(current, bool)):
            raise ValueError(f"{name}: cannot multiply the non-numeric value {current!r}")
        value = current * rng.choice(factors)
    if current is _MISSING or isinstance(dist, Choice):
        return value
    if isinstance(current, bool):
        return bool(value)  # as Ray: a bool stays a bool, only resampling can flip it
    if isinstance(current, int):
        value = round(value)  # Ray 2.60: int(round(x)); round() of a float is an int
    if clip and is_domain(dist) and _is_number(value):
        clipped = dist.clip(value)
        value = _int_within(clipped, dist.bounds) if isinstance(current, int) else clipped
    return value


def _int_within(value: float, bounds: tuple[float, float] | None) -> int:
    """An int config value stays an int after clipping to a float domain, still in bounds."""
    result = round(value)
    if bounds is None:
        return result
    return min(max(result, math.ceil(bounds[0])), math.floor(bounds[1]))


def load_callable(path: str, *, name: str = "custom_explore_fn") -> Callable[..., Any]:
    """Resolve ``"package.module:function"`` (or ``"package.module.function"``) to a callable.

    Why: configs are YAML, so a custom explore function is named by import path and resolved
    once when the policy is built, where a typo can still be reported as a one-line error.

    Raises:
        ValueError: the module cannot be imported, lacks the attribute, or it is not callable.
    """
    hint = "give 'package.module:function', importable from the working directory"
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{name}: expected an import path string, got {path!r}; {hint}")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        raise ValueError(f"{name}: {path!r} is not an import path; {hint}")
    if os.getcwd() not in sys.path and "" not in sys.path:  # as the hint promises
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # any import failure is a user error
        raise ValueError(
            f"{name}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{name}: {module_name!r} has no attribute {attr_path!r}; {hint}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{name}: {path!r} is a {type(target).__name__}, not a callable; {hint}")
    return target
