"""The layers a config is read from: YAML with 1.2 floats, ``PBTUNE_*`` variables, ``--set`` flags.

Why apart from the loader: each layer turns text into ``(key, value, source)`` updates and applies
them to a nested dict while ``sources`` (key → "--set pbt.burn_in=4", "env PBTUNE_...", ...) stays
exact, so an error about any key can name the layer that set it, even after a parent section was
replaced wholesale. The loader only decides the order of the layers (defaults < file <
environment < ``--set``) and validates the result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from pbtune.config.errors import one_line
from pbtune.config.types import Key
from pbtune.errors import ConfigError

ENV_PREFIX = "PBTUNE_"
#: ``PBTUNE_*`` variables that are not config keys, so they are never read as one.
ENV_DENYLIST: frozenset[str] = frozenset({"PBTUNE_RESULTS_DIR"})  # results root, read by the CLI
#: Prefixes of ``PBTUNE_*`` variables that belong to launch scripts, not to the config
#: (``slurm/*.sbatch`` export ``PBTUNE_SLURM_SHARED_DIR``, ``PBTUNE_SLURM_HEAD_IP``, ...).
ENV_DENY_PREFIXES: tuple[str, ...] = ("PBTUNE_SLURM_",)

# PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is a *string*; search spaces are full of such
# numbers (``PBTUNE_PARAM_SPACE__LR='{loguniform: [1e-4, 0.1]}'``), so both directions also use
# YAML 1.2's float syntax. Still safe loaders: no Python objects are ever constructed.
_FLOAT_1_2 = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently, so a setting written twice in a long config takes effect without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"the key {key!r} is given twice (remove one)", key_node.start_mark)
            if isinstance(key, str | int | float | bool):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class YamlDumper(yaml.SafeDumper):
    pass


for _cls in (_Loader, YamlDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789"))


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # safe: _Loader is a SafeLoader subclass


def yaml_problem(where: str, exc: yaml.YAMLError, fix: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return one_line(f"{where}: invalid YAML{at}: {problem}; {fix}")


def parse_value(text: str, where: str) -> Any:
    try:
        return yaml_load(text)
    except yaml.YAMLError as exc:
        fix = "quote strings, write mappings as {k: v}"
        raise ConfigError(yaml_problem(where, exc, fix)) from None


def env_updates(env: Mapping[str, str]) -> list[tuple[Key, Any, str]]:
    updates = []
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_DENYLIST or name.startswith(
                ENV_DENY_PREFIXES):
            continue
        key = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        if not all(key):
            raise ConfigError(
                f"environment variable {name}: empty key part; write PBTUNE_<SECTION>__<KEY>, "
                "e.g. PBTUNE_STOP__MAX_ITERATIONS=50"
            )
        updates.append((key, parse_value(text, f"environment variable {name}"), f"env {name}"))
    # Parents first, so PBTUNE_PBT='{...}' never wipes out PBTUNE_PBT__BURN_IN.
    return sorted(updates, key=lambda u: (len(u[0]), u[2]))


def override_updates(overrides: Sequence[str]) -> list[tuple[Key, Any, str]]:
    updates = []
    for item in overrides:
        dotted, sep, text = item.partition("=")
        key = tuple(part.strip() for part in dotted.split("."))
        if not sep or not all(key):
            raise ConfigError(
                f"--set {item!r}: expected KEY=VALUE with a dotted key, "
                "e.g. --set pbt.perturbation_interval=4"
            )
        updates.append((key, parse_value(text, f"--set {dotted.strip()}"), f"--set {item}"))
    return updates


def record_sources(data: Any, prefix: Key, label: str, sources: dict[Key, str]) -> None:
    sources[prefix] = label
    if isinstance(data, Mapping):
        for k, v in data.items():
            record_sources(v, (*prefix, str(k)), label, sources)


def lookup(data: Any, key: Key) -> Any:
    for part in key:
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def delete(data: dict[str, Any], key: Key, sources: dict[Key, str]) -> None:
    parent = lookup(data, key[:-1])
    if isinstance(parent, dict):
        parent.pop(key[-1], None)
    for known in [k for k in sources if k[: len(key)] == key]:
        del sources[known]


def assign(
    data: dict[str, Any], key: Key, value: Any, source: str, sources: dict[Key, str]
) -> None:
    """Set ``data[key]`` (creating sections; a non-mapping on the way is replaced)."""
    for part in key[:-1]:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[key[-1]] = value
    for known in [k for k in sources if k[: len(key)] == key]:
        del sources[known]
    record_sources(value, key, source, sources)
