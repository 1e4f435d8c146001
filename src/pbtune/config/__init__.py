"""Experiment configuration: the pydantic schema, YAML/env/``--set`` loading, and validation.

Why: one package owns every way a setting reaches an experiment, so precedence (defaults < file <
``PBTUNE_*`` environment < ``--set``) and the one-line error messages are the same for the CLI,
the benchmarks and the tests. Typical use::

    cfg = resolve(load_config("my.yaml", ["pbt.perturbation_interval=4"]))
"""

from __future__ import annotations

from pbtune.config.layers import ENV_DENYLIST, ENV_PREFIX
from pbtune.config.loader import dump_yaml, load_config, resolve, validate
from pbtune.config.schema import ExperimentConfig, PBTConfig, ResourceConfig, StopConfig

__all__ = [
    "ENV_DENYLIST",
    "ENV_PREFIX",
    "ExperimentConfig",
    "PBTConfig",
    "ResourceConfig",
    "StopConfig",
    "dump_yaml",
    "load_config",
    "resolve",
    "validate",
]
