"""The run's observable state, shared by the live table and the plain-text report (no Ray here).

Why: both views show the same numbers — per-trial status, node, hyperparameters, metric, iteration,
time and last exploit; per-node CPU/GPU use; the population's iterations/s and the ETA towards the
stopping criterion. Keeping the bookkeeping in one Callback means the two views cannot disagree and
each view is only formatting. The engine mutates :class:`~pbtune.engines.base.Trial` objects in
place, so ``status`` is read from them at render time (a render thread reads plain attributes; a
slightly stale value for one refresh is harmless).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pbtune.engines.base import Callback, Trial, is_better


@dataclass
class TrialView:
    """What the views show for one trial (updated as results and exploits arrive)."""

    trial_id: str
    trial: Trial | None = None
    config: dict[str, Any] = field(default_factory=dict)
    node: str = ""
    metric: float | None = None
    iteration: int = 0
    time_s: float = 0.0  # seconds inside train + evaluate, summed over reported iterations
    last_exploit: str = ""
    status: str = "PENDING"

    @property
    def live_status(self) -> str:
        return self.trial.status if self.trial is not None else self.status


def describe_exploit(decision: Any) -> str:
    """One line for an exploit: who copied whom, when, and which hyperparameters explore changed."""
    changed = {k: v for k, v in decision.new_config.items() if decision.old_config.get(k) != v}
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in changed.items())
    return (f"exploit: {decision.target} <- {decision.donor} at iteration "
            f"{decision.target_iteration}; explore {shown or '(unchanged)'}")


def format_value(value: Any) -> str:
    """Compact cell text: 4 significant digits for floats, ``-`` for missing or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class RunState(Callback):
    """Tracks everything the status views display.

    Args:
        metric: the ranking metric's name.
        mode: ``"max"`` or ``"min"``.
        population: number of trials.
        max_iterations: ``stop.max_iterations`` (iterations budget = population × this).
        threshold: ``stop.metric_threshold`` or None.
        time_budget_s: ``stop.time_budget_s`` (seconds) or None.
    """

    def __init__(self, metric: str, mode: str, population: int, max_iterations: int, *,
                 threshold: float | None = None, time_budget_s: float | None = None) -> None:
        self.metric, self.mode = metric, mode
        self.budget = max(1, population * max_iterations)  # iterations
        self.threshold = threshold
        self.time_budget_s = time_budget_s
        self.trials: dict[str, TrialView] = {}
        self.nodes: dict[str, dict[str, float | None]] = {}  # ip → {"cpu": %, "gpu": %}
        self.workers: list[dict[str, Any]] = []
        self.worker_ip: dict[int, str] = {}  # worker index → node ip (the trial's current node)
        self.slots = 0
        self.t0 = time.time()
        self.done = 0  # iterations reported, all trials
        self.exploits = 0
        self.best: tuple[float, str, int] | None = None  # (value, trial, iteration)
        self.summary: dict[str, Any] | None = None
        self.lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any) -> RunState:
        return cls(cfg.metric, cfg.mode, cfg.population, cfg.stop.max_iterations,
                   threshold=cfg.stop.metric_threshold, time_budget_s=cfg.stop.time_budget_s)

    # -- events ------------------------------------------------------------------------------------
    def _view(self, trial: Trial) -> TrialView:
        view = self.trials.get(trial.trial_id)
        if view is None:
            view = self.trials[trial.trial_id] = TrialView(trial.trial_id)
        view.trial = trial
        return view

    def on_start(self, info: dict[str, Any]) -> None:
        with self.lock:
            self.t0 = info.get("start_time", time.time())
            self._set_workers(info["workers"])
            self.slots = int(info["slots"])
            for trial in info["trials"]:
                self._view(trial).config = dict(trial.config)

    def on_workers(self, workers: list[dict[str, Any]]) -> None:
        """Nodes joined or left: count only live workers; a node with none left is dropped."""
        with self.lock:
            self._set_workers(workers)

    def _set_workers(self, workers: list[dict[str, Any]]) -> None:
        # Caller holds the lock. Past rows keep naming their node (worker_ip has every worker).
        self.workers = [w for w in workers if w.get("alive", True)]
        self.worker_ip = {int(w["index"]): str(w["ip"]) for w in workers}
        ips = {str(w["ip"]) for w in self.workers}
        for ip in ips:
            self.nodes.setdefault(ip, {"cpu": None, "gpu": None})
        for ip in set(self.nodes) - ips:
            del self.nodes[ip]

    def on_trial_start(self, trial: Trial) -> None:
        with self.lock:
            self._view(trial).config = dict(trial.config)

    def on_result(self, trial: Trial, row: dict[str, Any]) -> None:
        with self.lock:
            view = self._view(trial)
            value = float(row[self.metric])
            view.metric, view.iteration = value, int(row["iteration"])
            view.config = dict(row.get("config", view.config))
            view.node = str(row.get("node", view.node))
            view.time_s += float(row.get("time_this_iter_s") or 0.0)
            self.done += 1
            if is_better(value, None if self.best is None else self.best[0], self.mode):
                self.best = (value, trial.trial_id, view.iteration)
            node = self.nodes.setdefault(view.node, {"cpu": None, "gpu": None})
            for key, column in (("cpu", "node_cpu_percent"), ("gpu", "node_gpu_percent")):
                if row.get(column) is not None:
                    node[key] = float(row[column])

    def on_exploit(self, decision: Any) -> None:
        with self.lock:
            self.exploits += 1
            target = self.trials.setdefault(decision.target, TrialView(decision.target))
            target.last_exploit = f"<- {decision.donor} @ {decision.target_iteration}"
            target.config = dict(decision.new_config)

    def on_trial_end(self, trial: Trial) -> None:
        with self.lock:
            self._view(trial).status = trial.status

    def on_end(self, summary: dict[str, Any], best_state: dict[str, Any] | None) -> None:
        with self.lock:
            self.summary = summary
            for view in self.trials.values():
                if view.trial is not None:
                    view.status = view.trial.status

    # -- derived numbers ---------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since the engine's main loop started."""
        return max(0.0, time.time() - self.t0)

    def rate(self) -> float:
        """Population iterations per second since the start."""
        elapsed = self.elapsed()
        return self.done / elapsed if elapsed > 0 else 0.0

    def progress(self) -> tuple[float, float | None]:
        """``(fraction done, ETA seconds)`` towards the nearest stopping criterion.

        The iteration budget (population × max_iterations) and, when set, the time budget each
        give a fraction; the larger wins and the ETA is the sooner of the two. A metric threshold
        cannot be forecast, so it only shows in the header (best vs threshold).
        """
        fraction = min(1.0, self.done / self.budget)
        rate = self.rate()
        eta = (self.budget - self.done) / rate if rate > 0 else None
        if self.time_budget_s:
            elapsed = self.elapsed()
            fraction = max(fraction, min(1.0, elapsed / self.time_budget_s))
            left = max(0.0, self.time_budget_s - elapsed)
            eta = left if eta is None else min(eta, left)
        if self.summary is not None:
            return 1.0, 0.0
        return fraction, eta

    def hyperparameters(self) -> list[str]:
        """Hyperparameter names across the population, in first-seen order."""
        names: dict[str, None] = {}
        for view in self.trials.values():
            names.update(dict.fromkeys(view.config))
        return list(names)

    def best_text(self) -> str:
        if self.best is None:
            return "n/a"
        return f"{self.best[0]:.4f} ({self.best[1]} @ {self.best[2]})"

    def headline(self) -> str:
        """One line: progress, rate, ETA, best and exploits (the plain report's first line)."""
        fraction, eta = self.progress()
        text = (f"{self.done}/{self.budget} iterations ({100 * fraction:.0f}%), "
                f"{self.rate():.2f} it/s, ETA {format_duration(eta)}, best {self.metric} "
                f"{self.best_text()}")
        if self.threshold is not None:
            text += f" (stop at {self.threshold:g})"
        return text + f", exploits {self.exploits}"

    def workers_on(self, ip: str) -> str:
        """``3 workers``, or ``2 workers, 8 members`` when workers train several trials at once
        (resources.members_per_worker: each member is a slot of the coordinator's)."""
        lanes = [w for w in self.workers if str(w["ip"]) == ip]
        workers = len({w.get("pid", f"lane {w['index']}") for w in lanes})
        text = f"{workers} worker{'s' if workers != 1 else ''}"
        return text + (f", {len(lanes)} members" if len(lanes) > workers else "")

    def node_text(self) -> str:
        """``nodes: 10.0.0.1 cpu 85% gpu 40%; ...`` from the workers' latest rows."""
        parts = []
        for ip, usage in sorted(self.nodes.items()):
            cpu = "-" if usage["cpu"] is None else f"{usage['cpu']:.0f}%"
            gpu = "-" if usage["gpu"] is None else f"{usage['gpu']:.0f}%"
            parts.append(f"{ip} ({self.workers_on(ip)}) cpu {cpu} gpu {gpu}")
        return "nodes: " + ("; ".join(parts) if parts else "-")

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the per-trial table, as strings (both views format these)."""
        params = self.hyperparameters()
        header = ["trial", "status", "node", *params, self.metric, "iter", "time", "last exploit"]
        rows = []
        for view in sorted(self.trials.values(), key=lambda v: v.trial_id):
            worker = view.trial.worker if view.trial is not None else None
            node = self.worker_ip.get(worker, view.node) if worker is not None else view.node
            rows.append([view.trial_id, view.live_status, node or "-",
                         *(format_value(view.config.get(p)) for p in params),
                         format_value(view.metric), str(view.iteration),
                         format_duration(view.time_s), view.last_exploit or "-"])
        return header, rows
