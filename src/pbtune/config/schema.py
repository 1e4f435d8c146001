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
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

#: A dotted config key as a tuple: ``("pbt", "quantile_fraction")``.
Key = tuple[str, ...]


def _reject_bool(value: Any) -> Any:
    # pydantic's lax mode turns ``true`` into 1; ``population: true`` is a typo, not a number.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_reject_bool)]
Float = Annotated[float, BeforeValidator(_reject_bool)]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PBTConfig(_Model):
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


class StopConfig(_Model):
    """When trials and the experiment end."""

    max_iterations: Int = Field(1000, gt=0)  # STOP_ITER: iterations per trial
    # STOP_ACC: the experiment stops once any trial reaches it (>= in max mode, <= in min mode).
    metric_threshold: Float | None = 0.8
    time_budget_s: Float | None = Field(None, gt=0)  # seconds of wall time for the experiment
    # s a segment may still run past time_budget_s (a long or hung iteration) before it is
    # abandoned: its worker is stopped and the trial continues from the segment's start on resume
    grace_s: Float = Field(30.0, gt=0)


class PrecisionConfig(_Model):
    """Training precision per worker kind (recorded per row in trials.csv's ``precision``)."""

    cpu: Literal["fp32", "bf16"] = "fp32"  # CPU workers (fp16 autocast is slow on CPU)
    gpu: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16, else fp16, else fp32


class ResourceConfig(_Model):
    """Where trials run and how much of each node they may take."""

    address: str | None = None  # Ray address; None → $RAY_ADDRESS, else a local Ray instance
    slots: Int | None = Field(None, gt=0)  # concurrent workers; None = as many as fit
    cpus_per_trial: Float = Field(1.0, gt=0)  # CPUs per worker (a GPU worker's feeders too)
    gpus_per_trial: Float = Field(0.0, ge=0)  # GPUs per GPU worker; fractions share a GPU
    # With gpus_per_trial > 0, which nodes also get CPU workers (one population on both):
    # auto = nodes without GPUs; all = also a GPU node's CPUs left over; none = GPU workers only.
    cpu_workers: Literal["auto", "all", "none"] = "auto"
    cpus_per_cpu_trial: Float | None = Field(None, gt=0)  # CPUs per CPU worker (None: as above)
    precision: PrecisionConfig = PrecisionConfig()
    # Trials a GPU worker keeps on its device between segments; the others wait on the host
    # (restored exactly when they run there again). null: no limit.
    gpu_live_trials: Int | None = Field(4, ge=1)
    reserve_cpus: Float = Field(1.0, ge=0)  # CPUs per node left to Ray itself (Csys)
    # RESOURCE_ALLOCATION: node IP → {"CPU": n, "GPU": m} caps on what pbtune may use there.
    resource_allocation: dict[str, dict[str, Float]] = {}
    # Seconds to wait for the first planned worker to start (an error if none did). The run
    # starts with it and the others join as they start; the plan counts a node's total resources,
    # so another job holding some keeps a worker pending: a warning names those still not started
    # after this time.
    start_timeout_s: Float = Field(120.0, gt=0)
    # Where trial states live between segments. never: a snapshot of each state goes to Ray's
    # object store after every segment (fast for small states: a move or an exploit is a
    # reference). always: states stay on their workers; a donor's is copied once to its
    # target, checkpoints are written by the workers (the run directory must be shared by all
    # nodes). auto: the workload's large_state flag, else the first state's size against
    # large_state_mb.
    state_on_worker: Literal["auto", "always", "never"] = "auto"
    large_state_mb: Float = Field(512.0, gt=0)  # MB: auto keeps larger states on their workers
    # Copies of held states each worker keeps for reuse (states of host memory beyond its live
    # trials): a copy into memory already touched is many times faster than into new memory.
    # 0: every copy takes new memory.
    state_buffers: int = Field(2, ge=0)

    @field_validator("resource_allocation", mode="before")
    @classmethod
    def _original_layout(cls, value: Any) -> Any:
        """The original tool's ``{"CPU": {ip: n}, "GPU": {ip: n}}`` becomes ``{ip: {CPU, GPU}}``.

        Why: users' launch scripts already hold ``RESOURCE_ALLOCATION`` in that layout; it is
        accepted verbatim (a node missing from one of the two gets no cap on that resource).
        """
        if isinstance(value, dict) and value and set(value) <= {"CPU", "GPU"} and all(
                isinstance(v, dict) for v in value.values()):
            nodes: dict[str, dict[str, Any]] = {}
            for kind, per_node in value.items():
                for node, amount in per_node.items():
                    nodes.setdefault(str(node), {})[kind] = amount
            return nodes
        return value

    @field_validator("resource_allocation")
    @classmethod
    def _allocation(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for node, caps in value.items():
            for key, amount in caps.items():
                if key not in ("CPU", "GPU"):
                    raise ValueError(f"node {node}: key {key!r} is not a resource; use CPU or GPU")
                if amount < 0:
                    raise ValueError(f"node {node}: {key} = {amount} must be >= 0")
        return value


class FaultToleranceConfig(_Model):
    """How failures are absorbed and how many checkpoints are kept (see docs/fault-tolerance.md)."""

    max_failures: Int = Field(3, ge=0)  # errors + worker losses per trial before it stays ERROR
    keep_checkpoints: Int = Field(2, ge=1)  # resume points (cuts) whose checkpoints are kept


class TuneSettings(_Model):
    """Ray Tune engine (``engine: tune``): which Tune scheduler and searcher; docs/engines.md."""

    scheduler: Literal["pbt", "pb2", "asha", "hyperband", "fifo"] = "pbt"  # fifo = random search
    search: Literal["random", "optuna"] = "random"  # optuna: non-PBT schedulers only
    reuse_actors: bool = True  # reset_config instead of a new actor per trial switch
    synch: bool = False  # PBT/PB2: Tune's synchronous mode (rank at equal progress)
    grace_period: Int = Field(1, gt=0)  # iterations before ASHA may stop a trial
    reduction_factor: Float = Field(3.0, gt=1)  # ASHA / HyperBand: keep 1/reduction_factor
    policy_file: str | None = None  # pbt_policy_<trial>.txt: replay it (one trial)


class ExperimentConfig(_Model):
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
