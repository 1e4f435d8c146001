"""Reporting while a run goes: the live status table (terminal) and the plain-text report.

:func:`status_view` picks one for ``pbtune run`` / ``resume``: the rich live table when stdout is a
terminal, a plain-text report every ``report_interval`` seconds otherwise (CI, SLURM logs), none
with ``--quiet``. rich is imported only when the live table is used.
"""

from __future__ import annotations

import sys
from typing import Any

from pbtune.engines.base import Callback


def status_view(cfg: Any, *, quiet: bool = False, tty: bool | None = None,
                title: str = "pbtune") -> Callback | None:
    """The status callback for a run of ``cfg`` (None with ``quiet``); call its ``close()`` in a
    ``finally`` so a failed run leaves the terminal usable."""
    if quiet:
        return None
    from pbtune.reporting.status import RunState

    state = RunState.from_config(cfg)
    if (sys.stdout.isatty() or _jupyter()) if tty is None else tty:
        from pbtune.reporting.live import LiveStatus

        return LiveStatus(state, title=title)
    from pbtune.reporting.progress import ProgressPrinter

    return ProgressPrinter(state.budget, cfg.metric, cfg.mode, interval_s=cfg.report_interval,
                           state=state)


def _jupyter() -> bool:
    """Running in a Jupyter kernel: rich renders its live table there as HTML, not ANSI."""
    try:
        from rich.console import Console

        return bool(Console().is_jupyter)
    except Exception:
        return False
