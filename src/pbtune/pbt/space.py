"""Parse YAML search spaces into domains, and sample initial configs from them.

Why: users write ``lr: {loguniform: [1e-4, 1e-1]}`` in YAML; a typo there must fail at load time
with one line that names the key and the fix, not deep inside a worker. Ray Tune domain objects
(``tune.loguniform(...)``) are accepted too, duck-typed so this module never imports Ray.

Conventions (as in Ray): a plain list is kept as a list — in ``hyperparam_mutations`` it is an
ordered categorical explored by neighbour shifts, and ``sample_config`` picks one element of it.
Anything that is not a domain spec (numbers, strings, bools, callables) is a constant.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from pbtune.pbt.domains import (
    Choice,
    Domain,
    LogRandInt,
    LogUniform,
    QLogUniform,
    QUniform,
    RandInt,
    RandN,
    Uniform,
    _grid_bounds,
    _is_number,
    is_domain,
)

# domain name → the argument form shown in error messages
_USAGE = {
    "choice": "a non-empty list",
    "loguniform": "[lower, upper] or [lower, upper, base]",
    "lograndint": "[lower, upper]",
    "qloguniform": "[lower, upper, q]",
    "quniform": "[lower, upper, q]",
    "randint": "[lower, upper]",
    "randn": "[mean, sd]",
    "uniform": "[lower, upper]",
}
DOMAIN_NAMES: tuple[str, ...] = tuple(sorted(_USAGE))


def _numbers(name: str, kind: str, args: Any, arity: tuple[int, ...]) -> list[float]:
    if not isinstance(args, list | tuple) or len(args) not in arity:
        raise ValueError(f"{name}: {kind} needs {_USAGE[kind]}, got {args!r}")
    if not all(_is_number(a) and math.isfinite(a) for a in args):
        raise ValueError(f"{name}: {kind} arguments must be finite numbers, got {list(args)!r}")
    return list(args)


def _build(name: str, kind: str, args: Any) -> Domain:
    """One domain from its YAML name and argument list; every check raises a one-line error."""
    if kind == "choice":
        if not isinstance(args, list | tuple) or not args:
            raise ValueError(f"{name}: choice needs a non-empty list, got {args!r}")
        return Choice(tuple(args))
    if kind == "randn":
        mean, sd = _numbers(name, kind, args, (2,))
        if sd <= 0:
            raise ValueError(f"{name}: randn needs sd > 0, got {list(args)!r}")
        return RandN(float(mean), float(sd))
    if kind in ("randint", "lograndint"):
        lower, upper = _numbers(name, kind, args, (2,))
        if not (isinstance(lower, int) and isinstance(upper, int)):
            raise ValueError(f"{name}: {kind} needs integer bounds, got {list(args)!r}")
        if kind == "lograndint" and not 0 < lower < upper:
            raise ValueError(f"{name}: lograndint needs 0 < lower < upper, got {list(args)!r}")
        if not lower < upper:
            raise ValueError(
                f"{name}: randint needs lower < upper (upper is exclusive), got {list(args)!r}"
            )
        return RandInt(lower, upper) if kind == "randint" else LogRandInt(lower, upper)
    arity = (2, 3) if kind == "loguniform" else (3,) if kind.startswith("q") else (2,)
    values = _numbers(name, kind, args, arity)
    lower, upper = float(values[0]), float(values[1])
    log = "log" in kind
    if log and not 0 < lower < upper:
        raise ValueError(f"{name}: {kind} needs 0 < lower < upper, got {list(args)!r}")
    if not lower < upper:
        raise ValueError(f"{name}: {kind} needs lower < upper, got {list(args)!r}")
    if kind == "uniform":
        return Uniform(lower, upper)
    if kind == "loguniform":
        base = float(values[2]) if len(values) == 3 else 10
        if base <= 0 or base == 1:
            raise ValueError(f"{name}: loguniform needs base > 0 and != 1, got {base!r}")
        return LogUniform(lower, upper, base)
    q = float(values[2])
    if q <= 0:
        raise ValueError(f"{name}: {kind} needs q > 0, got {list(args)!r}")
    lo, hi = _grid_bounds(lower, upper, q)
    if lo > hi or (log and lo <= 0):
        raise ValueError(
            f"{name}: {kind} has no positive multiple of q={values[2]} in "
            f"[{values[0]}, {values[1]}]; lower q or widen the bounds"
        )
    return QUniform(lower, upper, q) if kind == "quniform" else QLogUniform(lower, upper, q)


def _from_ray(name: str, obj: Any) -> Domain:
    """Translate a Ray Tune ``Float``/``Integer``/``Categorical`` by its attributes (no import)."""
    cls = type(obj).__name__
    if cls == "Categorical":
        return _build(name, "choice", list(obj.categories))
    sampler = obj.get_sampler()
    q = getattr(sampler, "q", None)
    inner = type(sampler.get_sampler() if q is not None else sampler).__name__
    if cls == "Float" and inner == "_Normal" and q is None:
        return _build(name, "randn", [sampler.mean, sampler.sd])
    table = {
        ("Float", "_Uniform", False): "uniform",
        ("Float", "_LogUniform", False): "loguniform",
        ("Float", "_Uniform", True): "quniform",
        ("Float", "_LogUniform", True): "qloguniform",
        ("Integer", "_Uniform", False): "randint",
        ("Integer", "_LogUniform", False): "lograndint",
    }
    kind = table.get((cls, inner, q is not None))
    if kind is None:
        raise ValueError(
            f"{name}: unsupported Ray Tune domain {obj!r} ({cls} with {inner}"
            f"{f', q={q}' if q is not None else ''}); use one of {', '.join(DOMAIN_NAMES)}"
        )
    args = [obj.lower, obj.upper] + ([q] if q is not None else [])
    return _build(name, kind, args)


def _is_ray_domain(obj: Any) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("ray.tune.search") and type(obj).__name__ in (
        "Float",
        "Integer",
        "Categorical",
    )


def parse_domain(spec: Any, *, name: str) -> Any:
    """A Domain from its YAML form (``{"loguniform": [1e-4, 0.1]}``) or a Ray Tune domain.

    Anything else is returned unchanged: constants, callables, and plain lists (copied as lists).
    A one-key mapping whose key is close to a domain name (``logunifrom``) is treated as a typo
    rather than a nested config, because silently keeping it as a constant would hide the mistake.

    Args:
        spec: the value from the search space.
        name: the (dotted) key, used in error messages.

    Raises:
        ValueError: one line naming the key, what is wrong, and the fix.
    """
    if is_domain(spec):
        return spec
    if _is_ray_domain(spec):
        return _from_ray(name, spec)
    if isinstance(spec, list | tuple):
        if not spec:
            raise ValueError(
                f"{name}: an empty list has nothing to sample; list at least one value"
            )
        return list(spec)
    if isinstance(spec, Mapping) and len(spec) == 1:
        ((kind, args),) = spec.items()
        if isinstance(kind, str):
            if kind.lower() in _USAGE:
                return _build(name, kind.lower(), args)
            close = difflib.get_close_matches(kind.lower(), DOMAIN_NAMES, n=1, cutoff=0.75)
            if close:
                raise ValueError(
                    f"{name}: unknown domain {kind!r}; valid: {', '.join(DOMAIN_NAMES)} "
                    f"(did you mean {close[0]!r}?)"
                )
    return spec


def parse_space(space: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """Parse every value of a (possibly nested) search space; nested dicts recurse.

    Args:
        space: key → domain spec, constant, plain list, or nested mapping.
        prefix: dotted path of ``space`` inside the outer space (for error messages).

    Returns:
        A new dict with Domains in place of specs.
    """
    if not isinstance(space, Mapping):
        raise ValueError(f"{prefix or 'search space'}: expected a mapping, got {space!r}")
    parsed: dict[str, Any] = {}
    for key, spec in space.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        value = parse_domain(spec, name=name)
        if isinstance(value, Mapping):
            value = parse_space(value, prefix=name)
        parsed[key] = value
    return parsed


def sample_config(space: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """One concrete config: sample each Domain, pick an element of each plain list, keep constants.

    Keys are visited in insertion order, depth first, one draw group per Domain or list, so the
    same space and RNG state give the same config. Zero-arg callables are called (Ray allows a
    function as a sampler); they draw from whatever RNG they use themselves.
    """
    config: dict[str, Any] = {}
    for key, value in parse_space(space).items():
        config[key] = _sample_value(value, rng)
    return config


def _sample_value(value: Any, rng: random.Random) -> Any:
    if is_domain(value):
        return value.sample(rng)
    if isinstance(value, list):
        return rng.choice(value)
    if isinstance(value, Mapping):
        return {k: _sample_value(v, rng) for k, v in value.items()}
    if isinstance(value, Callable) and not isinstance(value, type):  # type: ignore[arg-type]
        return value()
    return value
