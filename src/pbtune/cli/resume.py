"""``pbtune resume RUN_DIR``: continue a crashed or interrupted run where its journal left off."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pbtune.api.finish import exit_code
from pbtune.api.resuming import resume_run
from pbtune.cli._common import add_command


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume a crashed or interrupted run from its journal and checkpoints.

    Restores the population (hyperparameters, iteration counters, lineage), the PBT RNG state,
    the best result and the exploit count from the last consistent checkpoint, rolls trials.csv
    and the PBT logs back to it, and continues in the same run directory.
    """
    run_dir = Path(args.run_dir).expanduser()
    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    address = args.address or os.environ.get("RAY_ADDRESS")
    summary = resume_run(run_dir, overrides, address, quiet=args.quiet)
    return 0 if summary is None else exit_code(summary, run_dir)


def register(sub: Any) -> None:
    parser = add_command(sub, "resume", cmd_resume)
    parser.add_argument("run_dir", help="the run directory (results/<experiment>/<run-id>)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="only accepted when it does not change the stored experiment")
    parser.add_argument("--seed", type=int, help="must equal the run's seed")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS or local)")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
