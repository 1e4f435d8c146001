"""The experiment configuration schema (pydantic v2): every key, its default, unit and range.

Why: a config is read once, before any Ray worker starts, so every mistake a YAML file, an
environment variable or a ``--set`` flag can hold must be caught here and reported in one line.
Models are frozen (a run cannot change its own config half-way) and forbid unknown keys (a typo
must never be silently ignored). Checks that need the workload class (metric names,
hyperparameter names) live in :func:`pbtune.config.loader.resolve`; everything that can be decided
from the config alone lives here; :mod:`pbtune.config.errors` turns schema violations into
one-line messages.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pbtune.config.resources import ResourceConfig
from pbtune.config.types import Float, Int, StrictModel

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class PBTConfig(StrictModel):
    """How the population is exploited and explored (Ray's ``PopulationBasedTraining`` knobs)."""

    enabled: bool = True  # False → plain random search over param_space (policy "random")
    # Native engine: the population policy (see `pbtune.pbt.POLICIES`): pbt (Jaderberg et al.),
    # pb2 (GP-bandit explore, Parker-Holder et al. 2020) or random (no perturbation).
    policy: str = "pbt"
    perturbation_interval: Int = Field(4, gt=0)  # iterations between exploit/explore steps
    burn_in: Int = Field(0, ge=0)  # iterations before the first perturbation
    quantile_fraction: Float = 0.25  # bottom fraction copies from the top fraction, in (0, 0.5]
    resample_probability: Float = Field(0.25, ge=0, le=1)  # chance to resample instead of perturb
    perturbation_factors: tuple[Float, Float] = (1.2, 0.8)  # multipliers for continuous values
    hyperparam_mutations: dict[str, Any] = {}  # default: the workload's default_mutations
    custom_explore_fn: str | None = None  # "module:function", applied after the built-in explore
    clip: bool = True  # clip perturbed values to the declared bounds (Ray does not)
    # Native engine: a trial no pending score can put in the bottom quantile goes on past the
    # boundary at once instead of idling its worker; the decisions are the same either way.
    early_release: bool = True

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        from pbtune.pbt.base import POLICIES

        if value not in POLICIES.names():
            raise ValueError(f"unknown policy {value!r}; valid: {', '.join(POLICIES.names())}")
        return value

    @field_validator("quantile_fraction")
    @classmethod
    def _quantile(cls, value: float) -> float:
        if not 0 < value <= 0.5:
            raise ValueError("must be in (0, 0.5] (the top and bottom quantiles cannot overlap)")
        return value

    @field_validator("perturbation_factors", mode="before")
    @classmethod
    def _two_factors(cls, value: Any) -> Any:
        # pydantic would say "field required" at index 1, which does not tell what is wanted.
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise ValueError("must be two factors [up, down], e.g. [1.2, 0.8]")
        return value

    @field_validator("perturbation_factors")
    @classmethod
    def _factors(cls, value: tuple[float, float]) -> tuple[float, float]:
        if min(value) <= 0:
            raise ValueError("both factors must be > 0, e.g. [1.2, 0.8]")
        return value

    @field_validator("custom_explore_fn")
    @classmethod
    def _explore_path(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("give 'package.module:function' or null")
        return value


class StopConfig(StrictModel):
    """When trials and the experiment end."""

    max_iterations: Int = Field(1000, gt=0)  # STOP_ITER: iterations per trial
    # STOP_ACC: the experiment stops once any trial reaches it (>= in max mode, <= in min mode).
    metric_threshold: Float | None = 0.8
    time_budget_s: Float | None = Field(None, gt=0)  # seconds of wall time for the experiment
    # s a segment may still run past time_budget_s (a long or hung iteration) before it is
    # abandoned: its worker is stopped and the trial continues from the segment's start on resume
    grace_s: Float = Field(30.0, gt=0)


class FaultToleranceConfig(StrictModel):
    """How failures are absorbed and how many checkpoints are kept (see docs/fault-tolerance.md)."""

    max_failures: Int = Field(3, ge=0)  # errors + worker losses per trial before it stays ERROR
    keep_checkpoints: Int = Field(2, ge=1)  # resume points (cuts) whose checkpoints are kept


class TuneSettings(StrictModel):
    """Ray Tune engine (``engine: tune``): which Tune scheduler and searcher; docs/engines.md."""

    scheduler: Literal["pbt", "pb2", "asha", "hyperband", "fifo"] = "pbt"  # fifo = random search
    search: Literal["random", "optuna"] = "random"  # optuna: non-PBT schedulers only
    reuse_actors: bool = True  # reset_config instead of a new actor per trial switch
    synch: bool = False  # PBT/PB2: Tune's synchronous mode (rank at equal progress)
    grace_period: Int = Field(1, gt=0)  # iterations before ASHA may stop a trial
    reduction_factor: Float = Field(3.0, gt=1)  # ASHA / HyperBand: keep 1/reduction_factor
    policy_file: str | None = None  # pbt_policy_<trial>.txt: replay it (one trial)


class ExperimentConfig(StrictModel):
    """One experiment: the workload, its search space, PBT settings, stopping and resources."""

    name: str = "pbtune"  # results go to results/<name>/<run-id>/
    workload: str = "digits-cnn"  # registry name, path/to/file.py:Class or package.module:Class
    options: dict[str, Any] = {}  # fixed workload settings over the workload's default_options
    metric: str | None = None  # None → the workload's default_metric
    mode: Literal["max", "min"] | None = None  # None → the workload's mode for ``metric``
    seed: Int = 0  # seeds initial sampling, PBT decisions and the trials' own seeds
    # cuDNN/torch deterministic algorithms on GPU workers: bit-for-bit repeatable runs and
    # resumes on the same hardware, at some speed (docs/configuration.md, reproducibility)
    deterministic: bool = False
    population: Int = Field(20, ge=1)  # HYPER_NUM: trials
    param_space: dict[str, Any] = {}  # initial sampling over the workload's default_param_space
    pbt: PBTConfig = PBTConfig()
    stop: StopConfig = StopConfig()
    resources: ResourceConfig = ResourceConfig()
    checkpoint_interval: Int = Field(50, gt=0)  # INTERVAL_CHECK: iterations between checkpoints
    fault_tolerance: FaultToleranceConfig = FaultToleranceConfig()
    report_interval: Float = Field(300.0, gt=0)  # INTERVAL_REPORT: seconds between text reports
    scheduling: str = "affinity"  # a registered dispatcher (pbtune.engines.dispatch)
    engine: Literal["native", "tune"] = "native"
    tune: TuneSettings = TuneSettings()  # used when engine is "tune"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        # It becomes a directory: no separators, no leading dot or dash, nothing a shell mangles.
        if not _SAFE_NAME.match(value):
            raise ValueError(
                "must be a directory name of letters, digits, '.', '_' or '-' (at most 100, "
                "not starting with '.' or '-')"
            )
        return value

    @field_validator("scheduling")
    @classmethod
    def _scheduling(cls, value: str) -> str:
        # Imported here, like pbt.policy's registry: the schema stays importable on its own.
        from pbtune.engines.dispatch import DISPATCHERS

        if value not in DISPATCHERS.names():
            valid = ", ".join(repr(name) for name in DISPATCHERS.names())
            raise ValueError(f"unknown dispatcher {value!r}; valid: {valid}")
        return value

    @field_validator("workload")
    @classmethod
    def _workload(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give a registered name (see `pbtune workloads`) or file.py:Class")
        return value

    @model_validator(mode="after")
    def _gangs_need_the_native_engine(self) -> ExperimentConfig:
        if self.engine == "tune" and self.resources.workers_per_trial > 1:
            raise ValueError(
                f"resources.workers_per_trial = {self.resources.workers_per_trial} needs the "
                "native engine (a Tune trial runs in one process); set engine: native or "
                "workers_per_trial: 1")
        if self.engine == "tune" and self.resources.members_per_worker > 1:
            raise ValueError(
                f"resources.members_per_worker = {self.resources.members_per_worker} needs the "
                "native engine (a Tune trial is one actor); set engine: native or "
                "members_per_worker: 1")
        return self

    @model_validator(mode="after")
    def _pbt_can_happen(self) -> ExperimentConfig:
        # A PBT run that can never perturb is a random search the user did not ask for.
        if not self.pbt.enabled:
            return self
        if self.population < 2:
            raise ValueError(
                f"population = {self.population}: PBT needs at least 2 trials to exploit; "
                "raise population or set pbt.enabled=false"
            )
        stop_at = self.stop.max_iterations
        if self.pbt.perturbation_interval > stop_at:
            raise ValueError(
                f"pbt.perturbation_interval = {self.pbt.perturbation_interval} is larger than "
                f"stop.max_iterations = {stop_at}, so no perturbation would ever happen; lower "
                "pbt.perturbation_interval, raise stop.max_iterations or set pbt.enabled=false"
            )
        if self.pbt.burn_in > stop_at:
            raise ValueError(
                f"pbt.burn_in = {self.pbt.burn_in} is larger than stop.max_iterations = "
                f"{stop_at}, so no perturbation would ever happen; lower pbt.burn_in"
            )
        return self
