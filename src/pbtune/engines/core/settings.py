"""The settings a coordinator runs with, read once from a resolved experiment config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunSettings:
    """What the coordinator needs of the config (plain values: no pydantic inside the core).

    Attributes:
        metric / mode: the ranked metric and ``"max"``/``"min"``.
        max_iter: iterations per trial.
        interval: perturbation interval (iterations).
        ckpt_interval: iterations between checkpoints (segments end there).
        early_release: trials safe from a boundary's decisions go on before it is decided.
        threshold: the metric value that stops the experiment, or None.
        time_budget_s: seconds of wall time for the experiment, or None.
        grace_s: seconds a running segment may overrun the budget before it is abandoned.
        max_failures: errors and worker losses a trial may have and still be recovered.
        recovery: checkpoints and cuts are wanted (a run directory is attached).
    """

    metric: str
    mode: str
    max_iter: int
    interval: int
    ckpt_interval: int
    early_release: bool = True
    threshold: float | None = None
    time_budget_s: float | None = None
    grace_s: float = 30.0  # s a segment may overrun time_budget_s before it is abandoned
    max_failures: int = 3
    recovery: bool = False

    @classmethod
    def from_config(cls, cfg: Any, recovery: bool = False) -> RunSettings:
        return cls(metric=cfg.metric, mode=cfg.mode, max_iter=cfg.stop.max_iterations,
                   interval=cfg.pbt.perturbation_interval, ckpt_interval=cfg.checkpoint_interval,
                   early_release=cfg.pbt.early_release, threshold=cfg.stop.metric_threshold,
                   time_budget_s=cfg.stop.time_budget_s, grace_s=cfg.stop.grace_s,
                   max_failures=cfg.fault_tolerance.max_failures, recovery=recovery)


def policy_name(cfg: Any) -> str:
    """The policy a config asks for (``pbt.enabled: false`` is random search)."""
    return cfg.pbt.policy if cfg.pbt.enabled else "random"
