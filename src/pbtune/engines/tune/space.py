"""pbtune search spaces → Ray Tune search-space objects, and PBT's explore clipping for Tune.

Why: one config must mean the same search under both engines. pbtune parses YAML domain specs
into its own :mod:`pbtune.pbt.domains`; Tune wants ``tune.uniform(...)`` & co. The two differ in
one convention that matters: in ``param_space`` pbtune samples one element of a plain list, Tune
keeps the list as a constant value, so lists become ``tune.choice`` there (in
``hyperparam_mutations`` both treat a list as an ordered categorical, so it stays a list).
Tune's PBT never clips perturbed values to the declared bounds; pbtune does when ``pbt.clip`` is
on (the default), so :func:`clipping_explore` reproduces that in Tune's ``custom_explore_fn``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ray import tune

from pbtune.errors import UserError
from pbtune.pbt import Choice, is_domain, load_callable, parse_space

_MAKERS: dict[str, Callable[..., Any]] = {
    "uniform": tune.uniform,
    "loguniform": tune.loguniform,
    "quniform": tune.quniform,
    "qloguniform": tune.qloguniform,
    "randint": tune.randint,
    "lograndint": tune.lograndint,
    "randn": tune.randn,
}


def to_tune(value: Any, *, lists_as_choice: bool) -> Any:
    """One parsed value (Domain, list, nested mapping or constant) as Tune expects it."""
    if is_domain(value):
        ((kind, args),) = value.to_spec().items()
        if kind == "choice":
            return tune.choice(list(args))
        return _MAKERS[kind](*args)
    if isinstance(value, list):
        return tune.choice(list(value)) if lists_as_choice else list(value)
    if isinstance(value, Mapping):
        return {k: to_tune(v, lists_as_choice=lists_as_choice) for k, v in value.items()}
    return value


def param_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """``param_space`` for ``tune.Tuner``: every pbtune domain spec as a Tune domain."""
    return to_tune(parse_space(space), lists_as_choice=True)


def mutations(space: Mapping[str, Any]) -> dict[str, Any]:
    """``hyperparam_mutations`` for Tune's PBT (lists stay ordered categoricals)."""
    return to_tune(parse_space(space), lists_as_choice=False)


def pb2_bounds(space: Mapping[str, Any]) -> dict[str, list[float]]:
    """``hyperparam_bounds`` for PB2, which models continuous hyperparameters only.

    Raises:
        UserError: a mutation is categorical or a constant; the message names it and the fix.
    """
    bounds: dict[str, list[float]] = {}
    for key, value in parse_space(space).items():
        if not is_domain(value) or isinstance(value, Choice) or not hasattr(value, "bounds"):
            raise UserError(
                f"tune.scheduler=pb2 explores numeric ranges only, but pbt.hyperparam_mutations."
                f"{key} = {value!r}; give it a range such as {{uniform: [lo, hi]}} or set it to "
                "null to freeze it"
            )
        lo, hi = value.bounds
        bounds[key] = [float(lo), float(hi)]
    if not bounds:
        raise UserError("tune.scheduler=pb2 needs at least one numeric hyperparam_mutation")
    return bounds


def clipping_explore(space: Mapping[str, Any], custom: str | None,
                     clip: bool) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """A ``custom_explore_fn`` for Tune's PBT: clip to the domains, then the user's function.

    Returns None when there is nothing to do (``clip`` off and no custom function), so Tune runs
    exactly as it would without pbtune.
    """
    user = load_callable(custom, name="pbt.custom_explore_fn") if custom else None
    domains = {k: v for k, v in parse_space(space).items() if is_domain(v)}
    if not clip and user is None:
        return None

    def explore(config: dict[str, Any]) -> dict[str, Any]:
        if clip:
            for key, domain in domains.items():
                if key in config and not isinstance(domain, Choice):
                    config[key] = domain.clip(config[key])
        if user is not None:
            result = user(config)
            config = result if isinstance(result, dict) else config
        return config

    return explore
