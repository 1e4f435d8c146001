"""``pbtune report RUN_DIR``: plots and a self-contained report.html for one run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pbtune.cli._common import add_command
from pbtune.errors import UserError


def cmd_report(args: argparse.Namespace) -> int:
    """Write RUN_DIR/plots/*.png and RUN_DIR/report.html (viewable offline).

    The page shows the best trial and its config, a table of every trial (final metric, config,
    exploits, status), the plots, the exploits and the errors.
    """
    from pbtune.results.report import build_report

    run_dir = Path(args.run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; pass the directory printed by "
                        "`pbtune run` (results/<experiment>/<run-id>; `pbtune runs` lists them)")
    out = build_report(run_dir)
    print(f"report: {out}")
    return 0


def register(sub: Any) -> None:
    parser = add_command(sub, "report", cmd_report)
    parser.add_argument("run_dir", help="the run directory (results/<experiment>/<run-id>)")
