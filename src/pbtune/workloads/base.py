"""The engine-agnostic workload interface.

Why: engines (the native Ray engine, the Ray Tune adapter, the replay tool) must train any model
without knowing what it is. A workload owns its model(s), optimiser(s), data view and RNG; an engine
only asks it to train N iterations, evaluate, hand over or take its full state, and change its
hyperparameters in place (so PBT's explore never rebuilds an optimiser and loses its momentum).

Life cycle, as every engine drives it::

    data = WorkloadCls.load_data(options)      # once per node; plain arrays, shared zero-copy
    w = WorkloadCls(config, data=data, options=options, seed=seed, device="cpu")
    w.train(n)            -> {"loss": ...}       # n iterations (the workload defines one)
    w.evaluate()          -> {"accuracy": ..., "loss": ...}
    s = w.get_state()     # model(s), optimiser(s), RNG, iteration: enough to continue bit-for-bit
    w.set_state(s)        # or set_state(donor_state, include_rng=False) on exploit
    w.apply_hyperparameters({"lr": 0.01})            # in place

``config`` holds the *tunable* hyperparameters (what PBT perturbs); ``options`` holds fixed
workload settings (data directory, width, epochs per iteration, subset sizes). A GAN keeps two
optimisers in its state and maps ``lr_g``/``lr_d`` onto them in ``apply_hyperparameters``; a
transformer fine-tune keeps its accumulation counter in its state. Nothing here assumes one model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from pbtune.errors import UserError
from pbtune.workloads.distributed import gang_position

#: Methods a workload class must implement; checked for user-supplied classes.
REQUIRED_METHODS: tuple[str, ...] = (
    "load_data",
    "train",
    "evaluate",
    "get_state",
    "set_state",
    "apply_hyperparameters",
)


class Workload(ABC):
    """Model + data + train/eval step, independent of any engine.

    Class attributes describe the workload to config validation and the CLI:

    Attributes:
        name: registry name, e.g. ``"digits-cnn"``.
        metrics: metric name → mode (``"max"`` or ``"min"``) for every metric ``evaluate`` returns.
        default_metric: the metric PBT ranks by unless the config says otherwise.
        hyperparameters: names of the tunable hyperparameters ``apply_hyperparameters`` accepts.
        default_config: a value for every tunable hyperparameter.
        default_param_space: a Ray-Tune-style search space (domain specs) for the population.
        default_mutations: ``hyperparam_mutations`` used when the config gives none.
        default_options: fixed settings and their defaults (``options`` overrides them).
        precisions: the training precisions it implements (``fp32``, ``bf16``, ``fp16``); it is
            given the one its worker uses as ``precision=`` (never for fp32, so a workload that
            declares only fp32 need not take the argument). See :mod:`pbtune.workloads.precision`.
    """

    name: ClassVar[str] = ""
    metrics: ClassVar[Mapping[str, str]] = {}
    default_metric: ClassVar[str] = ""
    hyperparameters: ClassVar[tuple[str, ...]] = ()
    default_config: ClassVar[Mapping[str, Any]] = {}
    default_param_space: ClassVar[Mapping[str, Any]] = {}
    default_mutations: ClassVar[Mapping[str, Any]] = {}
    default_options: ClassVar[Mapping[str, Any]] = {}
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    # States of gigabytes (a transformer and its optimiser): True keeps every trial's state on
    # its worker instead of snapshotting it into Ray's object store after each segment (see
    # resources.state_on_worker); None lets the first state's size decide.
    large_state: ClassVar[bool | None] = None

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        data: Any = None,
        options: Mapping[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        """Build model(s) and optimiser(s) from ``config``.

        Args:
            config: tunable hyperparameters; missing keys fall back to ``default_config``.
            data: what :meth:`load_data` returned (``None`` → the workload loads it itself).
            options: fixed settings, merged over ``default_options``.
            seed: seeds model initialisation and the workload's own RNG.
            device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
            precision: one of :attr:`precisions` (autocast dtype; fp32 = none).
        """
        self.config: dict[str, Any] = {**self.default_config, **dict(config)}
        self.options: dict[str, Any] = {**self.default_options, **dict(options or {})}
        self.seed = seed
        self.device = device
        self.precision = precision
        self.iteration = 0  # training iterations completed
        # Where this process is in the trial's gang (resources.workers_per_trial; 0 of 1 alone):
        # every rank trains a replica, rank 0's state is the trial's (distributed.py).
        self.rank, self.world_size = gang_position()

    @classmethod
    def merge_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """``options`` over :attr:`default_options`; an unknown key is a one-line UserError."""
        opts = {**cls.default_options, **dict(options or {})}
        unknown = sorted(set(opts) - set(cls.default_options))
        if unknown:
            raise UserError(f"{cls.name}: unknown options {unknown}; valid: "
                            f"{sorted(cls.default_options)}")
        return opts

    def check_hyperparameters(self, config: Mapping[str, Any]) -> None:
        """Raise ``KeyError`` naming the valid names for any key not in :attr:`hyperparameters`."""
        unknown = sorted(set(config) - set(self.hyperparameters))
        if unknown:
            raise KeyError(f"{self.name}: unknown hyperparameters {unknown}; "
                           f"valid: {list(self.hyperparameters)}")

    @classmethod
    @abstractmethod
    def load_data(cls, options: Mapping[str, Any]) -> Any:
        """Load and decode the data once per node.

        Returns plain numpy arrays (or a dict of them) so an engine can put them in Ray's object
        store once and every worker on the node maps them zero-copy. Must raise
        :class:`pbtune.errors.UserError` naming the exact file to place, and where, when data is
        missing and cannot be fetched.
        """

    @abstractmethod
    def train(self, iterations: int = 1) -> dict[str, float]:
        """Train ``iterations`` iterations and return training metrics (at least ``loss``)."""

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Evaluate on the validation split; returns every metric named in :attr:`metrics`."""

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """Full state: model(s), optimiser(s), RNG state, ``iteration`` and ``config``.

        Tensors are moved to CPU so the state can travel through the object store or to disk.
        """

    @abstractmethod
    def set_state(self, state: Mapping[str, Any], *, include_rng: bool = True) -> None:
        """Restore a state from :meth:`get_state`.

        Args:
            state: a state dict, possibly from another trial (PBT exploit).
            include_rng: ``False`` on exploit: the target keeps its own random stream, so a copied
                trial does not replay its donor's data order.
        """

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming a hyperparameter value this workload cannot train with.

        Why: called on every sampled and explored config before training starts, so a
        ``batch_size: 0`` ends the command with one line instead of every trial erroring. The
        default knows the common names and refuses what PyTorch's optimisers and data loaders
        refuse (``batch_size`` an integer >= 1; ``lr``, ``momentum`` and ``weight_decay`` finite
        and >= 0); override to add your own.
        """
        for key, value in config.items():
            problem = _common_problem(key, value)
            if problem:
                raise ValueError(f"{key} = {value!r}: {problem}")

    @abstractmethod
    def apply_hyperparameters(self, config: Mapping[str, Any]) -> None:
        """Change hyperparameters in place (optimiser param groups, batch size, ...).

        Unknown keys raise ``KeyError``; the optimiser object and its buffers are kept.
        """


def _common_problem(key: str, value: Any) -> str | None:
    import math

    if not isinstance(value, int | float) or isinstance(value, bool):
        return None  # other types are the workload's business
    if key == "batch_size" and (value < 1 or value != int(value)):
        return "must be an integer >= 1"
    if key in ("lr", "momentum", "weight_decay") and not (math.isfinite(value) and value >= 0):
        return "must be a finite number >= 0"
    return None


def missing_methods(cls: type) -> list[str]:
    """Names of interface methods ``cls`` does not implement (for a clear error on user classes)."""
    missing = []
    for method in REQUIRED_METHODS:
        impl = getattr(cls, method, None)
        if impl is None or getattr(impl, "__isabstractmethod__", False):
            missing.append(method)
    # and whatever a base class such as TorchWorkload leaves abstract (build_model, ...)
    missing += sorted(set(getattr(cls, "__abstractmethods__", ())) - set(missing))
    return missing
