"""Plain-text progress lines: what a run prints when the live table is not in use.

Why: in CI and SLURM logs there is no terminal to redraw; a periodic line with progress, the best
result so far and the exploit count is what an operator greps for. Exploits are printed as they
happen so the log shows PBT at work.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from pbtune.engines.base import Callback, Trial, is_better


class ProgressPrinter(Callback):
    """Prints a progress line every ``interval_s`` seconds, and each exploit.

    Args:
        total_iterations: population × max iterations (the budget, for the percentage).
        metric: ranking metric name.
        mode: ``"max"`` or ``"min"``.
        interval_s: seconds between progress lines (INTERVAL_REPORT).
        stream: where to print (stdout by default).
    """

    def __init__(self, total_iterations: int, metric: str, mode: str, *, interval_s: float = 300.0,
                 stream: TextIO | None = None) -> None:
        self.total = max(1, total_iterations)
        self.metric, self.mode = metric, mode
        self.interval_s = interval_s
        self.stream = stream or sys.stdout
        self.done = 0
        self.exploits = 0
        self.best: tuple[float, str, int] | None = None
        self.t0 = time.time()
        self._last = 0.0

    def _print(self, text: str) -> None:
        print(f"[{time.time() - self.t0:7.1f}s] {text}", file=self.stream, flush=True)

    def line(self) -> str:
        best = "n/a" if self.best is None else (
            f"{self.best[0]:.4f} ({self.best[1]} @ {self.best[2]})")
        return (f"{self.done}/{self.total} iterations ({100 * self.done / self.total:.0f}%), "
                f"best {self.metric} {best}, exploits {self.exploits}")

    def on_start(self, info: dict[str, Any]) -> None:
        self.t0 = info.get("start_time", time.time())
        nodes = sorted({w["ip"] for w in info["workers"]})
        self._print(f"{len(info['trials'])} trials on {info['slots']} workers "
                    f"({len(nodes)} node{'s' if len(nodes) != 1 else ''})")

    def on_result(self, trial: Trial, row: dict[str, Any]) -> None:
        self.done += 1
        value = float(row[self.metric])
        if is_better(value, None if self.best is None else self.best[0], self.mode):
            self.best = (value, trial.trial_id, int(row["iteration"]))
        now = time.time()
        if now - self._last >= self.interval_s:
            self._last = now
            self._print(self.line())

    def on_exploit(self, decision: Any) -> None:
        self.exploits += 1
        changed = {k: v for k, v in decision.new_config.items()
                   if decision.old_config.get(k) != v}
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in changed.items())
        self._print(f"exploit: {decision.target} <- {decision.donor} at iteration "
                    f"{decision.target_iteration}; explore {shown or '(unchanged)'}")

    def on_trial_end(self, trial: Trial) -> None:
        if trial.error:
            self._print(f"trial {trial.trial_id} errored: {trial.error.splitlines()[0]}")

    def on_end(self, summary: dict[str, Any], best_state: dict[str, Any] | None) -> None:
        self._print(self.line() + f" — stopped: {summary['stop_reason']}")
