"""The live status table: a rich ``Live`` display redrawn about once a second in a terminal.

Why: watching a population train is how users spot a stuck node, a diverging trial or PBT copying
the same donor over and over. The display shows a header with each node's CPU and GPU use (from the
workers' latest rows; GPU via NVML when the node has one) and the population's iterations/s, a
progress bar with the ETA towards the stopping criterion, and one row per trial (id, status, node,
hyperparameters, metric, iteration, time in train + evaluate, last exploit). Exploits and errors
are printed above the table as they happen. The numbers come from :class:`RunState`, the same
bookkeeping the plain-text report uses.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pbtune.engines.base import Callback, Trial
from pbtune.reporting.status import RunState, describe_exploit, format_duration

#: Colour per trial status.
STATUS_STYLE = {"RUNNING": "green", "PAUSED": "yellow", "PENDING": "dim", "TERMINATED": "blue",
                "ERROR": "bold red"}


class LiveStatus(Callback):
    """Renders a :class:`RunState` with rich ``Live`` while the run is going.

    Args:
        state: the run's state (``RunState.from_config(cfg)``).
        title: shown above the table (experiment name and run directory).
        console: where to draw (a terminal console by default).
        refresh_s: seconds between redraws.
    """

    def __init__(self, state: RunState, *, title: str = "pbtune", console: Console | None = None,
                 refresh_s: float = 1.0) -> None:
        self.state = state
        self.title = title
        self.console = console or Console()
        self.live = Live(console=self.console, get_renderable=self.render,
                         refresh_per_second=1.0 / refresh_s, transient=False,
                         redirect_stdout=False, redirect_stderr=False)

    # -- rendering ---------------------------------------------------------------------------------
    def header(self) -> Table:
        """Nodes' CPU/GPU use, rate and best so far as a borderless grid."""
        state = self.state
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for ip, usage in sorted(state.nodes.items()):
            cpu = "-" if usage["cpu"] is None else f"{usage['cpu']:.0f}%"
            gpu = "-" if usage["gpu"] is None else f"{usage['gpu']:.0f}%"
            grid.add_row(f"node {ip}", f"{state.workers_on(ip)}   CPU {cpu:>4}   GPU {gpu:>4}")
        best = state.best_text()
        if state.threshold is not None:
            best += f"   (stops at {state.threshold:g})"
        grid.add_row("population", f"{state.rate():.2f} it/s   exploits {state.exploits}   "
                                   f"elapsed {format_duration(state.elapsed())}")
        grid.add_row(f"best {state.metric}", best)
        return grid

    def progress(self) -> Table:
        fraction, eta = self.state.progress()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(width=40)
        grid.add_column()
        grid.add_row(ProgressBar(total=1.0, completed=fraction, width=40),
                     f"{100 * fraction:3.0f}%  {self.state.done}/{self.state.budget} iterations"
                     f"  ETA {format_duration(eta)}")
        return grid

    def trials(self) -> Table:
        header, rows = self.state.table()
        table = Table(header_style="bold", expand=False)
        for name in header:
            numeric = name not in ("trial", "status", "node", "last exploit")
            table.add_column(name, justify="right" if numeric else "left", no_wrap=True,
                             min_width=len(name))  # never truncate a header to "it…"
        for row in rows:
            style = STATUS_STYLE.get(row[1], "")
            table.add_row(row[0], Text(row[1], style=style), *row[2:])
        return table

    def render(self) -> Group:
        with self.state.lock:
            return Group(Text(self.title, style="bold"), self.header(), self.progress(),
                         self.trials())

    # -- events ------------------------------------------------------------------------------------
    def on_start(self, info: dict[str, Any]) -> None:
        self.state.on_start(info)
        self.live.start()

    def on_workers(self, workers: list[dict[str, Any]]) -> None:
        self.state.on_workers(workers)

    def on_trial_start(self, trial: Trial) -> None:
        self.state.on_trial_start(trial)

    def on_result(self, trial: Trial, row: dict[str, Any]) -> None:
        self.state.on_result(trial, row)

    def on_exploit(self, decision: Any) -> None:
        self.state.on_exploit(decision)
        self.live.console.print(describe_exploit(decision), highlight=False)

    def on_trial_end(self, trial: Trial) -> None:
        self.state.on_trial_end(trial)
        if trial.error and trial.status == "ERROR":
            self.live.console.print(f"[red]trial {trial.trial_id} errored:[/red] "
                                    f"{trial.error.splitlines()[0]}", highlight=False)

    def on_end(self, summary: dict[str, Any], best_state: dict[str, Any] | None) -> None:
        self.state.on_end(summary, best_state)
        self.close()

    def close(self) -> None:
        """Draw the final table and stop redrawing (idempotent; also called when the run fails)."""
        if self.live.is_started:
            self.live.refresh()
            self.live.stop()
