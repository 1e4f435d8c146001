"""``pbtune bench``: native PBT/PB2 vs Ray Tune's PBT/PB2 vs random search on one config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pbtune.cli._common import add_command, add_config_args, resolved_config
from pbtune.errors import UserError


def cmd_bench(args: argparse.Namespace) -> int:
    """Run one workload and budget through native PBT, Ray Tune's PBT and random search.

    Every method trains the same seeded population for the same iterations, each run in a fresh
    Ray session; only the engine (native, tune with Tune's asynchronous or synchronous PBT) or the
    search (random = native with pbt.enabled false) differs. --methods also offers native-pb2
    (pbt.policy pb2) and tune-pb2 (Tune's PB2). Prints each method's median best metric,
    end-to-end and engine wall time, efficiency and exploits over --seeds N (seeds 0..N-1), then
    the ratios. No result directories are written; --out FILE.json keeps every run's numbers.
    """
    from pbtune.engines.bench import METHODS, format_table, run_bench, write_json

    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds} must be at least 1")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UserError(f"--methods {args.methods!r}: valid methods are {', '.join(METHODS)}")
    cfg = resolved_config(args)
    result = run_bench(cfg, args.seeds, methods)
    print(f"\n{cfg.workload}: population {cfg.population}, {cfg.stop.max_iterations} iterations, "
          f"perturbation interval {cfg.pbt.perturbation_interval}, {args.seeds} seed(s)\n")
    print(format_table(result))
    if args.out is not None:
        write_json(result, args.out)
        print(f"\nwritten: {args.out}")
    return 0


def register(sub: Any) -> None:
    parser = add_command(sub, "bench", cmd_bench)
    add_config_args(parser)
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="repeat with seeds 0..N-1; the table shows medians (default 1)")
    from pbtune.engines.bench import DEFAULT_METHODS, METHODS  # no Ray: imported lazily there

    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)} (default: "
                        f"{','.join(DEFAULT_METHODS)})")
    parser.add_argument("--out", type=Path, metavar="FILE.json", help="also write JSON here")
