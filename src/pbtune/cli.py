"""The ``pbtune`` command line: parses arguments and calls library functions, nothing more.

Every user mistake surfaces as ``error: <one line>`` on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pbtune import __version__
from pbtune.errors import UserError


def _config(args: argparse.Namespace) -> Any:
    from pbtune.config import load_config, resolve

    overrides = list(args.set or [])
    for flag, key in (("workload", "workload"), ("seed", "seed"), ("address", "resources.address"),
                      ("engine", "engine")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return resolve(load_config(args.config, overrides))


def cmd_run(args: argparse.Namespace) -> int:
    """Run a PBT experiment (the quickstart preset when no CONFIG is given)."""
    from pbtune.config import dump_yaml
    from pbtune.engines import create_engine
    from pbtune.reporting.progress import ProgressPrinter
    from pbtune.results import ResultsWriter, create_run_dir, write_metadata

    cfg = _config(args)
    engine = create_engine(cfg, [])
    engine.prepare()  # connect, plan, load data: fails before anything is written
    run_dir = create_run_dir(args.results_dir, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg), {"experiment": cfg.name})
    engine.callbacks.append(ResultsWriter(run_dir))
    if not args.quiet:
        interval = cfg.report_interval if not sys.stdout.isatty() else min(cfg.report_interval, 5)
        engine.callbacks.append(ProgressPrinter(cfg.population * cfg.stop.max_iterations,
                                                cfg.metric, cfg.mode, interval_s=interval))
    summary = engine.run()
    best = summary["best"] or {}
    print(f"run directory: {run_dir}")
    if best:
        print(f"best {cfg.metric}: {best['metric']:.4f} (trial {best['trial_id']}, "
              f"iteration {best['iteration']}, config {json.dumps(best['config'])})")
    print(f"wall {summary['wall_s']:.1f} s, compute {summary['compute_s']:.1f} s on "
          f"{summary['slots']} slots, efficiency {summary['efficiency']:.2f}, "
          f"exploits {summary['exploits']}, stopped by {summary['stop_reason']}")
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    """List the registered workloads with their metrics and hyperparameters."""
    from pbtune.workloads import get, list_workloads

    for name in list_workloads():
        cls = get(name)
        metrics = ", ".join(f"{m} ({mode})" for m, mode in cls.metrics.items())
        print(f"{name}: metrics {metrics}; hyperparameters {', '.join(cls.hyperparameters)}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Show, per node, the worker slots and concurrent trials the config would get."""
    from pbtune.cluster import cluster_nodes, connect, plan_cluster, plan_text

    cfg = _config(args)
    res = cfg.resources
    connect(res.address)
    plan = plan_cluster(cluster_nodes(), cpus_per_trial=res.cpus_per_trial,
                        gpus_per_trial=res.gpus_per_trial, reserve_cpus=res.reserve_cpus,
                        resource_allocation=dict(res.resource_allocation) or None,
                        slots=res.slots)
    print(plan_text(plan))
    return 0 if plan.workers else 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbtune", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pbtune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Any, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        p.set_defaults(func=func)
        if config:
            p.add_argument("config", nargs="?", help="YAML config (default: the quickstart preset)")
            p.add_argument("--set", action="append", metavar="KEY=VALUE",
                           help="override a config key (dotted), e.g. --set pbt.burn_in=4")
            p.add_argument("--workload", help="workload name or path/to/file.py:ClassName")
            p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS or local)")
        return p

    run = add("run", cmd_run)
    run.add_argument("--results-dir", default=os.environ.get("PBTUNE_RESULTS_DIR", "results"),
                     help="results root (default ./results or $PBTUNE_RESULTS_DIR)")
    run.add_argument("--seed", type=int, help="seed for sampling and PBT decisions")
    run.add_argument("--quiet", action="store_true", help="print only the final summary")
    add("plan", cmd_plan)
    add("workloads", cmd_workloads, config=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "config", None) is not None and not Path(args.config).exists():
        print(f"error: config file {args.config} not found", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
