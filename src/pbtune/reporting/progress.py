"""Plain-text progress reports: what a run prints when no terminal can redraw a live table.

Why: in CI and SLURM logs there is no terminal to redraw; every ``report_interval`` seconds
(INTERVAL_REPORT) the run prints a timestamped block an operator can grep and read: one headline
(progress, iterations/s, ETA, best so far, exploits), the nodes' CPU/GPU use and a compact
per-trial table. Exploits and errors are printed as they happen so the log shows PBT at work. The
report comes from a timer thread, so a run whose iterations take longer than the interval still
reports on time; a final report with the full table is printed at the end.

Report format (each line prefixed by ``[<seconds since start, 7.1f>s]``)::

    [   30.0s] report: 12/16 iterations (75%), 0.40 it/s, ETA 10s, best score 2.1 (t001 @ 4), ...
    [   30.0s]   nodes: 10.0.0.1 (2 workers) cpu 85% gpu -
    [   30.0s]   trial  status      node      lr      score  iter  time  last exploit
    [   30.0s]   t000   PAUSED      10.0.0.1  0.3121  1.2    4     1s    <- t001 @ 2
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from pbtune.engines.base import Callback, Trial
from pbtune.reporting.status import RunState, describe_exploit


def text_table(header: list[str], rows: list[list[str]], max_width: int = 14) -> list[str]:
    """Left-aligned columns separated by two spaces; cells cut to ``max_width`` characters."""
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "~" for c in row]
             for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]


class ProgressPrinter(Callback):
    """Prints a report every ``interval_s`` seconds, each exploit and each trial error.

    Args:
        total_iterations: population × max iterations (the budget, for the percentage); ignored
            when ``state`` is given.
        metric: ranking metric name.
        mode: ``"max"`` or ``"min"``.
        interval_s: seconds between reports (INTERVAL_REPORT).
        stream: where to print (stdout by default).
        state: a :class:`RunState` built from the config (knows the threshold and time budget).
        table: include the per-trial table in the periodic reports.
    """

    def __init__(self, total_iterations: int, metric: str, mode: str, *, interval_s: float = 300.0,
                 stream: TextIO | None = None, state: RunState | None = None,
                 table: bool = True) -> None:
        self.state = state or RunState(metric, mode, total_iterations, 1)
        self.interval_s = interval_s
        self.stream = stream or sys.stdout
        self.show_table = table
        self._print_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _print(self, text: str) -> None:
        stamp = f"[{self.state.elapsed():7.1f}s]"
        with self._print_lock:
            for line in text.splitlines():
                print(f"{stamp} {line}", file=self.stream)
            self.stream.flush()

    def line(self) -> str:
        """The headline of a report (progress, rate, ETA, best, exploits)."""
        return self.state.headline()

    def report(self, table: bool = True) -> str:
        """A full report: headline, node usage and (optionally) the per-trial table."""
        with self.state.lock:
            lines = [f"report: {self.state.headline()}", f"  {self.state.node_text()}"]
            if table:
                header, rows = self.state.table()
                lines += [f"  {line}" for line in text_table(header, rows)]
        return "\n".join(lines)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._print(self.report(self.show_table))

    # -- events ------------------------------------------------------------------------------------
    def on_start(self, info: dict[str, Any]) -> None:
        self.state.on_start(info)
        nodes = sorted({w["ip"] for w in info["workers"]})
        self._print(f"{len(info['trials'])} trials on {info['slots']} workers "
                    f"({len(nodes)} node{'s' if len(nodes) != 1 else ''}); a report every "
                    f"{self.interval_s:g} s")
        self._thread = threading.Thread(target=self._tick, name="pbtune-report", daemon=True)
        self._thread.start()

    def on_workers(self, workers: list[dict[str, Any]]) -> None:
        self.state.on_workers(workers)
        live = [w for w in workers if w.get("alive", True)]
        nodes = sorted({str(w["ip"]) for w in live})
        shapes: dict[str, int] = {}
        for w in live:
            if w.get("shape"):
                shapes[str(w["shape"])] = shapes.get(str(w["shape"]), 0) + 1
        kinds = "; " + ", ".join(f"{n} x {s}" for s, n in sorted(shapes.items())) if len(
            shapes) > 1 else ""  # mixed shapes: how many of each (GPU and CPU workers)
        self._print(f"workers: {len(live)} live on {len(nodes)} node"
                    f"{'s' if len(nodes) != 1 else ''} ({', '.join(nodes) or '-'}){kinds}")

    def on_trial_start(self, trial: Trial) -> None:
        self.state.on_trial_start(trial)

    def on_result(self, trial: Trial, row: dict[str, Any]) -> None:
        self.state.on_result(trial, row)

    def on_exploit(self, decision: Any) -> None:
        self.state.on_exploit(decision)
        self._print(describe_exploit(decision))

    def on_trial_end(self, trial: Trial) -> None:
        self.state.on_trial_end(trial)
        if trial.error and trial.status == "ERROR":
            self._print(f"trial {trial.trial_id} errored: {trial.error.splitlines()[0]}")

    def on_end(self, summary: dict[str, Any], best_state: dict[str, Any] | None) -> None:
        self.close()
        self.state.on_end(summary, best_state)
        self._print(self.report(table=True) + f"\nstopped: {summary['stop_reason']}")

    def close(self) -> None:
        """Stop the report thread (idempotent; also called when the run fails)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
