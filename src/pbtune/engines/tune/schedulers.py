"""Tune schedulers and searchers by name, from a resolved pbtune config.

Why: ``tune.scheduler: pbt|pb2|asha|hyperband|fifo`` (and ``tune.search``, ``tune.policy_file``)
must map onto Tune's own classes with pbtune's settings — perturbation interval and burn-in in
training iterations, the same quantile, resample probability, factors and mutations — so that a
run under ``engine: tune`` is Tune as Tune users run it, configured like the native run.
Optional dependencies (GPy for PB2, optuna) are checked here, before anything starts, with a
one-line error that says how to install them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    PopulationBasedTraining,
    PopulationBasedTrainingReplay,
)

from pbtune.engines.tune import space
from pbtune.errors import UserError

SCHEDULERS = ("pbt", "pb2", "asha", "hyperband", "fifo")
#: Called on every exploit: (target tune trial, donor tune trial, new config).
DecisionSink = Callable[[Any, Any, dict[str, Any]], None]
EXTRA = "pip install 'pbtune[tune-extras]'"


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def require(module: str, what: str, package: str) -> None:
    """A UserError naming the missing optional package and the install command."""
    if not _available(module):
        raise UserError(f"{what} needs the optional package {package}, which is not installed; "
                        f"install it with `{EXTRA}` (or `pip install {package}`)")


class _Logged:
    """Mixin for Tune's PBT/PB2: report each exploit to pbtune as Tune logs it.

    ``_log_config_on_step`` is where Tune writes its ``pbt_global.txt`` row, with both trials
    and the new config at hand, so hooking it sees every exploit exactly once, live. The sink is
    dropped when Tune pickles the scheduler into its experiment state (it holds open files).
    """

    _pbtune_sink: DecisionSink | None = None

    def _log_config_on_step(self, trial_state: Any, new_state: Any, trial: Any,
                            trial_to_clone: Any, new_config: dict[str, Any]) -> None:
        super()._log_config_on_step(  # type: ignore[misc]
            trial_state, new_state, trial, trial_to_clone, new_config)
        if self._pbtune_sink is not None:
            self._pbtune_sink(trial, trial_to_clone, dict(new_config))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_pbtune_sink", None)
        return state


class LoggedPBT(_Logged, PopulationBasedTraining):
    """Tune's ``PopulationBasedTraining`` that also reports exploits to pbtune."""


def _pbt_kwargs(cfg: Any) -> dict[str, Any]:
    pbt = cfg.pbt
    return {
        "time_attr": "training_iteration",
        "perturbation_interval": pbt.perturbation_interval,  # training iterations
        "quantile_fraction": pbt.quantile_fraction,
        "log_config": True,
        "synch": cfg.tune.synch,  # False (Tune's default): rank whatever each last reported
    }


def make_scheduler(cfg: Any, sink: DecisionSink | None = None) -> Any:
    """The Tune scheduler for ``cfg.tune`` (replay when ``tune.policy_file`` is set)."""
    settings = cfg.tune
    if settings.policy_file:
        try:
            return PopulationBasedTrainingReplay(settings.policy_file)
        except (ValueError, OSError) as exc:
            raise UserError(f"tune.policy_file: {exc}") from None
    name = settings.scheduler
    max_t = cfg.stop.max_iterations
    if name == "pbt":
        sched: Any = LoggedPBT(
            hyperparam_mutations=space.mutations(cfg.pbt.hyperparam_mutations),
            resample_probability=cfg.pbt.resample_probability,
            perturbation_factors=tuple(cfg.pbt.perturbation_factors),
            custom_explore_fn=space.clipping_explore(
                cfg.pbt.hyperparam_mutations, cfg.pbt.custom_explore_fn, cfg.pbt.clip),
            burn_in_period=cfg.pbt.burn_in,  # PB2 has no burn-in
            **_pbt_kwargs(cfg),
        )
    elif name == "pb2":
        require("GPy", "tune.scheduler=pb2 (Ray's PB2 fits a Gaussian process)", "GPy")
        require("sklearn", "tune.scheduler=pb2", "scikit-learn")
        from ray.tune.schedulers.pb2 import PB2

        class LoggedPB2(_Logged, PB2):
            """Tune's ``PB2`` that also reports exploits to pbtune."""

        sched = LoggedPB2(hyperparam_bounds=space.pb2_bounds(cfg.pbt.hyperparam_mutations),
                          **_pbt_kwargs(cfg))
    elif name == "asha":
        sched = ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                              grace_period=min(cfg.tune.grace_period, max_t),
                              reduction_factor=cfg.tune.reduction_factor)
    elif name == "hyperband":
        sched = HyperBandScheduler(time_attr="training_iteration", max_t=max_t,
                                   reduction_factor=cfg.tune.reduction_factor)
    elif name == "fifo":
        sched = FIFOScheduler()
    else:  # the schema's Literal makes this unreachable from a config
        raise UserError(f"tune.scheduler {name!r} is unknown; valid: {', '.join(SCHEDULERS)}")
    if sink is not None and isinstance(sched, _Logged):
        sched._pbtune_sink = sink
    return sched


def make_search(cfg: Any, initial_configs: list[dict[str, Any]]) -> Any:
    """The search algorithm: pbtune's seeded population, or Optuna for non-PBT schedulers.

    Why the population is passed as ``points_to_evaluate``: both engines then start from the
    very same configs for the same seed, so a comparison measures the engine and scheduler, not
    the luck of the initial draw.
    """
    from ray.tune.search.basic_variant import BasicVariantGenerator

    settings = cfg.tune
    if settings.search == "optuna":
        if settings.policy_file or settings.scheduler in ("pbt", "pb2"):
            raise UserError(
                f"tune.search=optuna cannot drive tune.scheduler={settings.scheduler}"
                f"{' with a policy_file' if settings.policy_file else ''}: PBT schedulers mutate "
                "configs themselves; use tune.scheduler=asha, hyperband or fifo with optuna"
            )
        require("optuna", "tune.search=optuna", "optuna")
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=cfg.seed)
    if settings.policy_file:
        return None
    # No max_concurrent here: it caps *live* trials, and PBT and HyperBand need the whole
    # population live (paused trials count) to rank it; the cluster's resources cap running ones.
    return BasicVariantGenerator(points_to_evaluate=[dict(c) for c in initial_configs])
