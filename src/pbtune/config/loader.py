"""Load an :class:`ExperimentConfig` from YAML, the environment and ``--set`` flags; resolve it.

Why: a config comes from up to four places (field defaults < YAML file or the packaged quickstart
preset < ``PBTUNE_*`` environment variables < ``--set key=value``), and a SLURM script must be able
to change even the search space without editing a file. Whatever goes wrong, the user gets one
:class:`~pbtune.errors.UserError` line naming the key, where it came from and the fix — never a
pydantic dump or a traceback. :func:`load_config` needs nothing but the config; :func:`resolve`
then checks it against the workload class (which may import torch), so ``load_config`` stays cheap.

Environment: ``PBTUNE_<KEY>`` with ``__`` for nesting, key lower-cased, value parsed as YAML::

    PBTUNE_STOP__MAX_ITERATIONS=50
    PBTUNE_PARAM_SPACE__LR='{loguniform: [1e-4, 0.1]}'
    PBTUNE_PBT__HYPERPARAM_MUTATIONS__BATCH_SIZE='[64, 128, 256]'

Variables in :data:`~pbtune.config.layers.ENV_DENYLIST` are not config (``PBTUNE_RESULTS_DIR`` is
read by the CLI).
``RAY_ADDRESS`` fills ``resources.address`` when no layer sets it.
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pbtune.config.errors import check_keys, format_error, one_line
from pbtune.config.layers import (
    YamlDumper,
    assign,
    delete,
    env_updates,
    lookup,
    override_updates,
    record_sources,
    yaml_load,
    yaml_problem,
)
from pbtune.config.schema import ExperimentConfig
from pbtune.config.types import Key
from pbtune.errors import ConfigError, UserError

PRESET = "quickstart.yaml"
#: Keys that only make sense for the workload they were written for (they name its
#: hyperparameters and settings); the preset's are dropped when the workload is switched.
WORKLOAD_SPECIFIC: tuple[tuple[str, ...], ...] = (
    ("options",),
    ("param_space",),
    ("pbt", "hyperparam_mutations"),
)

_TYPE_NAMES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> ExperimentConfig:
    """Build a validated (not yet resolved) config from file, environment and overrides.

    Args:
        path: a YAML file; ``None`` → the packaged quickstart preset. When the preset is used and
            a later layer switches ``workload``, the preset's digits-specific ``options``,
            ``param_space`` and ``pbt.hyperparam_mutations`` are dropped, so the new workload's
            defaults apply instead of failing on hyperparameters it does not have.
        overrides: ``"dotted.key=value"`` strings (``--set``), values parsed as YAML, applied last.
            A mapping value replaces the key's whole value (``param_space={lr: 0.1}``).
        env: the environment to read ``PBTUNE_*`` and ``RAY_ADDRESS`` from (default
            ``os.environ``; pass ``{}`` to ignore it, as benchmarks and tests do).

    Raises:
        UserError: one line naming the problem, the key, where it came from, and the fix.
    """
    env = os.environ if env is None else env
    raw, label = _read_file(path)
    sources: dict[Key, str] = {}
    record_sources(raw, (), label, sources)
    updates = env_updates(env) + override_updates(overrides)
    if path is None:
        preset_workload = raw.get("workload")
        final = next((v for k, v, _ in reversed(updates) if k == ("workload",)), preset_workload)
        if final != preset_workload:
            for key in WORKLOAD_SPECIFIC:
                delete(raw, key, sources)
    for key, value, source in updates:
        assign(raw, key, value, source, sources)
    address = env.get("RAY_ADDRESS")
    if address and lookup(raw, ("resources", "address")) is None:
        assign(raw, ("resources", "address"), address, "env RAY_ADDRESS", sources)
    check_keys(raw, (), sources)
    return validate(raw, sources)


def validate(data: Mapping[str, Any], sources: Mapping[Key, str] | None = None) -> ExperimentConfig:
    """``ExperimentConfig.model_validate`` with pydantic's errors turned into one UserError line."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_error(exc, sources or {})) from None


def dump_yaml(cfg: ExperimentConfig) -> str:
    """Plain YAML of the config (every default filled in); ``load_config`` reads it back equal."""
    data = cfg.model_dump(mode="json")
    return yaml.dump(
        data, Dumper=YamlDumper, sort_keys=False, allow_unicode=True, default_flow_style=None
    )


def resolve(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check ``cfg`` against its workload and fill in what the workload decides.

    Fills ``metric`` and ``mode``; merges ``options`` and ``param_space`` over the workload's
    defaults; ``pbt.hyperparam_mutations`` are exactly the ones the config lists, else the
    workload's defaults (``null`` ones removed, so a hyperparameter can be frozen); parses every
    domain spec; imports ``pbt.custom_explore_fn``; dry-runs the explore step. Idempotent.

    Raises:
        UserError: unknown workload, metric, hyperparameter or option; bad domain spec;
            unimportable explore function.
    """
    from pbtune.pbt import load_callable, parse_space
    from pbtune.workloads import precision
    from pbtune.workloads.registry import canonical_spec, get

    cls = get(cfg.workload)  # an unknown workload's UserError names the valid ones
    where = f"workload {cfg.workload}"
    metrics = dict(cls.metrics)
    metric = cfg.metric or cls.default_metric or next(iter(metrics), "")
    if metric not in metrics:
        raise ConfigError(
            f"metric {metric!r} is not reported by {where}; valid: {', '.join(metrics)} "
            "(set metric to one of them)"
        )
    _check_names("options", cfg.options, list(cls.default_options), f"a setting of {where}")
    res = cfg.resources
    problem = precision.check(getattr(cls, "precisions", ("fp32",)), res.precision.model_dump(),
                              ["cpu", "gpu"] if res.gpus_per_trial else ["cpu"], cfg.workload)
    if problem:
        raise ConfigError(problem)
    valid = list(cls.hyperparameters)
    hyper = f"a hyperparameter of {cfg.workload}"
    _check_names("param_space", cfg.param_space, valid, hyper)
    _check_names("pbt.hyperparam_mutations", cfg.pbt.hyperparam_mutations, valid, hyper)
    param_space = {**cls.default_param_space, **cfg.param_space}
    mutations = resolved_mutations(cls.default_mutations, cfg.pbt.hyperparam_mutations)
    try:
        parse_space(param_space, prefix="param_space")
        parse_space(mutations, prefix="pbt.hyperparam_mutations")
        if cfg.pbt.custom_explore_fn:
            load_callable(cfg.pbt.custom_explore_fn, name="pbt.custom_explore_fn")
    except ValueError as exc:
        hint = "" if "(check" in str(exc) else (
            " (check pbt.hyperparam_mutations, param_space and pbt.custom_explore_fn)")
        raise ConfigError(one_line(f"config error: {exc}{hint}")) from None
    if cfg.pbt.enabled and not mutations and not cfg.pbt.custom_explore_fn:
        raise ConfigError(
            f"pbt.hyperparam_mutations is empty for {where}: PBT would have nothing to explore; "
            "list mutations, set pbt.custom_explore_fn, or set pbt.enabled=false"
        )
    data = cfg.model_dump()
    data.update(
        workload=canonical_spec(cfg.workload),  # a relative file path works from any directory
        metric=metric,
        mode=cfg.mode or metrics[metric],
        options={**cls.default_options, **cfg.options},
        param_space=param_space,
    )
    data["pbt"]["hyperparam_mutations"] = mutations
    resolved = validate(data)
    _dry_run(resolved)
    return resolved


def _dry_run(cfg: ExperimentConfig) -> None:
    """Explore the initial population once now: a mutation or explore function that cannot
    work fails before anything starts, not at the first boundary (see ``population.dry_run``)."""
    from pbtune.engines.population import dry_run

    try:
        dry_run(cfg)
    except UserError:
        raise
    except ValueError as exc:
        hint = "" if "(check" in str(exc) else (
            " (check pbt.hyperparam_mutations, param_space and pbt.custom_explore_fn)")
        raise ConfigError(one_line(f"config error: {exc}{hint}")) from None
    except Exception as exc:  # explore or a custom_explore_fn raised something else
        raise ConfigError(one_line(
            f"config error: exploring the initial population fails: {type(exc).__name__}: "
            f"{exc} (check pbt.hyperparam_mutations, param_space and pbt.custom_explore_fn)"))\
            from None


def resolved_mutations(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """What PBT explores: exactly the mutations the config lists, else the workload's defaults.

    Why not a merge: a config that lists lr, momentum and weight_decay must not also mutate the
    batch size because the workload's defaults do (the original tool keeps it fixed). A config
    that only sets some defaults to ``null`` freezes those and keeps the other defaults.
    """
    if any(v is not None for v in given.values()):
        return {k: v for k, v in given.items() if v is not None}
    return {k: v for k, v in defaults.items() if given.get(k, ...) is not None}


def _check_names(section: str, given: Mapping[str, Any], valid: list[str], what: str) -> None:
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" — did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{section} key {key!r} is not {what}{hint}; valid: {', '.join(valid) or '(none)'}"
            )


def _read_file(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """The file's top-level mapping and a label for messages."""
    if path is None:
        label = f"preset {Path(PRESET).stem}"
        text = importlib.resources.files("pbtune").joinpath("presets", PRESET).read_text("utf-8")
    else:
        label = f"config file {path}"
        file = Path(path).expanduser()
        if not file.exists():
            raise ConfigError(f"{label} not found; check the path, or give none for the quickstart")
        if not file.is_file():
            raise ConfigError(f"{label} is not a file; give the path of a YAML file")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(one_line(f"cannot read {label}: {exc}")) from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(label, exc, "fix the YAML syntax")) from None
    if data is None:
        return {}, label  # an empty file is all defaults
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: the top level must be a mapping of config keys (workload: ..., "
            f"population: ...), got a {_TYPE_NAMES.get(type(data), type(data).__name__)}"
        )
    return data, label
