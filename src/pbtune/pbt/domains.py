"""Search-space domains: what a hyperparameter may take, how to sample it, how to clip it.

Why: PBT's explore step multiplies values by perturbation factors, which can walk a learning rate
out of the range the user declared. Each domain therefore knows its own bounds and can ``clip`` a
value back to the nearest value it could have produced. Sampling always draws from a
``random.Random`` the caller owns (never the global ``random`` or numpy state), so a seed fixes
every draw. ``to_spec`` gives back the YAML form, so ``parse_domain(d.to_spec()) == d``.

Draws per ``sample`` call (reproducibility depends on them): Uniform, LogUniform, QUniform,
QLogUniform and LogRandInt make one ``rng.uniform``; RandInt one ``rng.randrange``; Choice one
``rng.choice``; RandN one ``rng.normalvariate`` (no hidden ``gauss`` cache, unlike ``rng.gauss``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, get_args


def _clamp(value: float, lower: float, upper: float) -> float:
    return min(max(value, lower), upper)


def _decimals(q: float) -> int:
    """Decimal places of ``q`` (0.05 → 2), to print quantized values without float noise."""
    exponent = Decimal(str(q)).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _snap(value: float, q: float) -> float:
    """Round ``value`` to the nearest multiple of ``q`` (0.30000000000000004 → 0.3)."""
    return float(round(round(value / q) * q, _decimals(q) + 1))


def _grid_bounds(lower: float, upper: float, q: float) -> tuple[float, float]:
    """The smallest and largest multiples of ``q`` inside [lower, upper]."""
    return _snap(math.ceil(lower / q - 1e-9) * q, q), _snap(math.floor(upper / q + 1e-9) * q, q)


def _log_uniform(rng: random.Random, lower: float, upper: float, base: float) -> float:
    """One log-uniform draw; clamped because ``base ** log_base(x)`` can miss ``x`` by an ulp."""
    exponent = rng.uniform(math.log(lower, base), math.log(upper, base))
    return _clamp(base**exponent, lower, upper)


@dataclass(frozen=True)
class Uniform:
    """Continuous uniform on [lower, upper]."""

    lower: float
    upper: float

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.lower, self.upper)

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.lower, self.upper)

    def clip(self, value: float) -> float:
        return _clamp(value, self.lower, self.upper)

    def to_spec(self) -> dict[str, list[Any]]:
        return {"uniform": [self.lower, self.upper]}


@dataclass(frozen=True)
class LogUniform:
    """Log-uniform on [lower, upper] (0 < lower): each decade is equally likely.

    ``base`` is kept for YAML round trips and Ray parity; the distribution does not depend on it.
    """

    lower: float
    upper: float
    base: float = 10

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.lower, self.upper)

    def sample(self, rng: random.Random) -> float:
        return _log_uniform(rng, self.lower, self.upper, self.base)

    def clip(self, value: float) -> float:
        return _clamp(value, self.lower, self.upper)

    def to_spec(self) -> dict[str, list[Any]]:
        args: list[Any] = [self.lower, self.upper]
        if self.base != 10:
            args.append(self.base)
        return {"loguniform": args}


@dataclass(frozen=True)
class QUniform:
    """Uniform on [lower, upper], rounded to a multiple of ``q`` (Ray's ``tune.quniform``)."""

    lower: float
    upper: float
    q: float

    @property
    def bounds(self) -> tuple[float, float]:
        return _grid_bounds(self.lower, self.upper, self.q)

    def sample(self, rng: random.Random) -> float:
        lo, hi = self.bounds
        return self.clip(rng.uniform(lo, hi))

    def clip(self, value: float) -> float:
        """Nearest grid value inside the bounds (explored values are snapped back onto the grid)."""
        lo, hi = self.bounds
        return _clamp(_snap(value, self.q), lo, hi)

    def to_spec(self) -> dict[str, list[Any]]:
        return {"quniform": [self.lower, self.upper, self.q]}


@dataclass(frozen=True)
class QLogUniform:
    """Log-uniform on [lower, upper], rounded to a multiple of ``q`` (``tune.qloguniform``)."""

    lower: float
    upper: float
    q: float

    @property
    def bounds(self) -> tuple[float, float]:
        return _grid_bounds(self.lower, self.upper, self.q)

    def sample(self, rng: random.Random) -> float:
        lo, hi = self.bounds
        return self.clip(_log_uniform(rng, lo, hi, 10))

    def clip(self, value: float) -> float:
        lo, hi = self.bounds
        return _clamp(_snap(value, self.q), lo, hi)

    def to_spec(self) -> dict[str, list[Any]]:
        return {"qloguniform": [self.lower, self.upper, self.q]}


@dataclass(frozen=True)
class RandInt:
    """Integer uniform on [lower, upper) — upper exclusive, like Ray's ``tune.randint``."""

    lower: int
    upper: int

    @property
    def bounds(self) -> tuple[int, int]:
        return (self.lower, self.upper - 1)

    def sample(self, rng: random.Random) -> int:
        return rng.randrange(self.lower, self.upper)

    def clip(self, value: float) -> int:
        return int(_clamp(round(value), self.lower, self.upper - 1))

    def to_spec(self) -> dict[str, list[Any]]:
        return {"randint": [self.lower, self.upper]}


@dataclass(frozen=True)
class LogRandInt:
    """Integer log-uniform on [lower, upper) (0 < lower), floored like Ray's ``tune.lograndint``."""

    lower: int
    upper: int

    @property
    def bounds(self) -> tuple[int, int]:
        return (self.lower, self.upper - 1)

    def sample(self, rng: random.Random) -> int:
        return min(math.floor(_log_uniform(rng, self.lower, self.upper, 10)), self.upper - 1)

    def clip(self, value: float) -> int:
        return int(_clamp(round(value), self.lower, self.upper - 1))

    def to_spec(self) -> dict[str, list[Any]]:
        return {"lograndint": [self.lower, self.upper]}


@dataclass(frozen=True)
class Choice:
    """Unordered categorical. (A plain YAML list in ``hyperparam_mutations`` is the *ordered*
    categorical instead, explored by neighbour shifts.)"""

    categories: tuple[Any, ...]

    @property
    def bounds(self) -> None:
        return None

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.categories)

    def clip(self, value: Any) -> Any:
        """A member stays; a number outside the set moves to the nearest numeric category (first on
        ties); anything else is returned unchanged, since there is no meaningful "nearest"."""
        if value in self.categories:
            return value
        numeric = [c for c in self.categories if _is_number(c)]
        if not _is_number(value) or not numeric:
            return value
        return min(numeric, key=lambda c: abs(c - value))

    def to_spec(self) -> dict[str, list[Any]]:
        return {"choice": list(self.categories)}


@dataclass(frozen=True)
class RandN:
    """Normal(mean, sd). Unbounded, so ``clip`` is the identity."""

    mean: float
    sd: float

    @property
    def bounds(self) -> None:
        return None

    def sample(self, rng: random.Random) -> float:
        return rng.normalvariate(self.mean, self.sd)

    def clip(self, value: float) -> float:
        return value

    def to_spec(self) -> dict[str, list[Any]]:
        return {"randn": [self.mean, self.sd]}


Domain = Uniform | LogUniform | QUniform | QLogUniform | RandInt | LogRandInt | Choice | RandN
DOMAIN_TYPES: tuple[type, ...] = get_args(Domain)


def is_domain(value: Any) -> bool:
    """Whether ``value`` is one of pbtune's domain objects."""
    return isinstance(value, DOMAIN_TYPES)


def _is_number(value: Any) -> bool:
    """A real number that is not a bool (``True`` is an int in Python, never a bound here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
