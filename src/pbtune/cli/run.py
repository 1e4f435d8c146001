"""``pbtune run``: run an experiment and write its results."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pbtune.cli._common import add_command, add_config_args, add_results_dir, resolved_config


def cmd_run(args: argparse.Namespace) -> int:
    """Run a PBT experiment (the quickstart preset when no CONFIG is given).

    Results go to <results-dir>/<experiment>/<run-id>/: config.yaml, meta.json, trials.csv,
    pbt_global.txt, pbt_policy_<trial>.txt, best_model.pt and summary.json.
    """
    from pbtune.config import dump_yaml
    from pbtune.engines import create_engine
    from pbtune.reporting.progress import ProgressPrinter
    from pbtune.results import ResultsWriter, create_run_dir, write_metadata

    cfg = resolved_config(args)
    engine = create_engine(cfg, [])
    engine.prepare()  # connect, plan, load data: fails before anything is written
    run_dir = create_run_dir(args.results_dir, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg), {"experiment": cfg.name})
    engine.enable_recovery(run_dir, header=journal_header(run_dir))  # checkpoints + journal
    engine.callbacks.append(ResultsWriter(run_dir))
    if not args.quiet:
        interval = cfg.report_interval if not sys.stdout.isatty() else min(cfg.report_interval, 5)
        engine.callbacks.append(ProgressPrinter(cfg.population * cfg.stop.max_iterations,
                                                cfg.metric, cfg.mode, interval_s=interval))
    summary = engine.run()
    print_summary(cfg, summary, run_dir)
    from pbtune.cli.resume import interrupted_exit

    return interrupted_exit(summary, run_dir)  # 130 and the resume command after Ctrl-C


def journal_header(run_dir: Any) -> dict[str, Any]:
    """The journal header: versions and the stored config's hash (resume refuses an edit)."""
    import hashlib

    from pbtune import __version__

    text = (run_dir / "config.yaml").read_bytes()
    return {"pbtune": __version__, "config_sha256": hashlib.sha256(text).hexdigest()}


def print_summary(cfg: Any, summary: dict[str, Any], run_dir: Any) -> None:
    best = summary["best"] or {}
    print(f"run directory: {run_dir}")
    if best:
        print(f"best {cfg.metric}: {best['metric']:.4f} (trial {best['trial_id']}, "
              f"iteration {best['iteration']}, config {json.dumps(best['config'])})")
    print(f"wall {summary['wall_s']:.1f} s, compute {summary['compute_s']:.1f} s on "
          f"{summary['slots']} slots, efficiency {summary['efficiency']:.2f}, "
          f"exploits {summary['exploits']}, stopped by {summary['stop_reason']}")
    if summary.get("errors"):
        print(f"errored trials: {', '.join(sorted(summary['errors']))} (see summary.json)")


def register(sub: Any) -> None:
    parser = add_command(sub, "run", cmd_run)
    add_config_args(parser)
    add_results_dir(parser)
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
