"""``pbtune run``: run an experiment and write its results."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from pbtune.cli._common import add_command, add_config_args, add_results_dir, resolved_config
from pbtune.cli._finish import exit_code, journal_header, print_summary
from pbtune.errors import UserError


def cmd_run(args: argparse.Namespace) -> int:
    """Run a PBT experiment (the quickstart preset when no CONFIG is given).

    Results go to <results-dir>/<experiment>/<run-id>/: config.yaml, meta.json, trials.csv,
    pbt_global.txt, pbt_policy_<trial>.txt, best_model.pt, summary.json and plots/. With
    --exp-times N the experiment runs N times (seeds seed, seed+1, ...) and each repetition's
    runtime, best metric and resource use are appended to <results-dir>/Running_Results.txt.
    """
    cfg = resolved_config(args)
    if args.exp_times is None:
        summary, run_dir = run_once(args, cfg)
        return exit_code(summary, run_dir)  # 130 and the resume command after Ctrl-C
    from pbtune.results.repeat import RunningResults

    if args.exp_times < 1:
        raise UserError(f"--exp-times {args.exp_times} must be at least 1")
    log = RunningResults(args.results_dir, cfg, args.exp_times)
    for rep in range(1, args.exp_times + 1):
        rep_cfg = cfg.model_copy(update={"seed": cfg.seed + rep - 1})
        print(f"repetition {rep}/{args.exp_times} (seed {rep_cfg.seed})", flush=True)
        summary, run_dir = run_once(args, rep_cfg)
        if summary.get("stop_reason") == "interrupted":
            return exit_code(summary, run_dir)  # no mean over an interrupted series
        log.add(rep, rep_cfg, summary, run_dir)
    log.finish()
    print(f"{args.exp_times} repetitions (mean ± std): {log.describe()}; appended to {log.path}")
    return 0


def run_once(args: argparse.Namespace, cfg: Any) -> tuple[dict[str, Any], Any]:
    """One experiment: prepare, write provenance, run with the status view, plot; returns
    ``(summary, run_dir)``."""
    from pbtune.config import dump_yaml
    from pbtune.engines import create_engine
    from pbtune.reporting import status_view
    from pbtune.results import ResultsWriter, create_run_dir, write_metadata

    started = time.perf_counter()
    engine = create_engine(cfg, [])
    engine.prepare()  # connect, plan, load data: fails before anything is written
    run_dir = create_run_dir(args.results_dir, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg), {"experiment": cfg.name})
    engine.enable_recovery(run_dir, header=journal_header(run_dir))  # checkpoints + journal
    engine.callbacks.append(ResultsWriter(run_dir))
    if args.tensorboard:
        from pbtune.results.tensorboard import TensorBoardLogger

        engine.callbacks.append(TensorBoardLogger(run_dir))
    if not args.quiet:  # what the user wrote is what runs: show it before it does
        print(f"exploring ({cfg.pbt.policy if cfg.pbt.enabled else 'random search'}): "
              f"{json.dumps(dict(cfg.pbt.hyperparam_mutations)) if cfg.pbt.enabled else '-'}",
              flush=True)
    view = status_view(cfg, quiet=args.quiet, title=f"pbtune {cfg.name}: {run_dir}")
    if view is not None:
        engine.callbacks.append(view)
    try:
        summary = engine.run()
    finally:
        if view is not None:
            view.close()  # type: ignore[attr-defined]  # a failed run leaves the terminal usable
    print_summary(cfg, summary, run_dir)
    if not args.no_plots:
        write_plots(run_dir)
    summary["end_to_end_s"] = round(time.perf_counter() - started, 3)  # Running_Results.txt
    return summary, run_dir


def write_plots(run_dir: Any) -> None:
    """Draw ``plots/`` (a plotting failure is a warning: the results are already written)."""
    try:
        from pbtune.results.plots import make_plots

        make_plots(run_dir)
        print(f"plots: {run_dir / 'plots'} (pbtune report {run_dir} writes report.html)")
    except Exception as exc:  # never lose a finished run to matplotlib
        print(f"warning: plots not written: {type(exc).__name__}: {exc}", file=sys.stderr)


def register(sub: Any) -> None:
    parser = add_command(sub, "run", cmd_run)
    add_config_args(parser)
    add_results_dir(parser)
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    parser.add_argument("--exp-times", type=int, metavar="N",
                        help="repeat the experiment N times with seeds seed..seed+N-1 and append "
                             "runtime, best metric and resource use to Running_Results.txt")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write TensorBoard scalars to <run_dir>/tensorboard/<trial>/")
    parser.add_argument("--no-plots", action="store_true", help="skip plots/ at the end")
