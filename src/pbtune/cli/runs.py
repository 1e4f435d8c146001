"""``pbtune runs [RESULTS_ROOT]``: list past runs, newest first."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pbtune.cli._common import add_command


def cmd_runs(args: argparse.Namespace) -> int:
    """List past runs (experiment, run id, date, workload, trials, best metric, wall time).

    Read from each run's summary.json, meta.json and config.yaml; runs without a summary (crashed
    or still running) are listed as incomplete.
    """
    from pbtune.results.runs import find_runs, format_runs

    damaged: list[str] = []
    runs = find_runs(args.root, damaged)
    for problem in damaged:
        print(f"warning: skipped damaged run {problem}", file=sys.stderr)
    if args.limit:
        runs = runs[: args.limit]
    print(format_runs(runs) if runs else f"no runs under {args.root}")
    return 0


def register(sub: Any) -> None:
    parser = add_command(sub, "runs", cmd_runs)
    parser.add_argument("root", nargs="?", default=os.environ.get("PBTUNE_RESULTS_DIR", "results"),
                        help="results root (default ./results or $PBTUNE_RESULTS_DIR)")
    parser.add_argument("-n", "--limit", type=int, help="show only the N newest runs")
