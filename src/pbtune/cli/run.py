"""``pbtune run``: run an experiment and write its results."""

from __future__ import annotations

import argparse
from typing import Any

from pbtune.api.finish import exit_code
from pbtune.cli._common import (
    add_command,
    add_config_args,
    add_results_dir,
    resolved_config,
    stop_own_ray,
)
from pbtune.errors import UserError


def cmd_run(args: argparse.Namespace) -> int:
    """Run a PBT experiment (the quickstart preset when no CONFIG is given).

    Results go to <results-dir>/<experiment>/<run-id>/: config.yaml, meta.json, trials.csv,
    pbt_global.txt, pbt_policy_<trial>.txt, best_model.pt, summary.json and plots/. With
    --exp-times N the experiment runs N times (seeds seed, seed+1, ...) and each repetition's
    runtime, best metric and resource use are appended to <results-dir>/Running_Results.txt.
    """
    try:
        return _run(args)
    finally:  # an error after Ray started (a config the workload rejects): Ray stops too
        stop_own_ray()


def _run(args: argparse.Namespace) -> int:
    cfg = resolved_config(args, start_ray=True)
    if args.exp_times is None:
        summary, run_dir = run_once(args, cfg, last=True)
        return exit_code(summary, run_dir)  # 130 and the resume command after Ctrl-C
    from pbtune.results.repeat import RunningResults

    if args.exp_times < 1:
        raise UserError(f"--exp-times {args.exp_times} must be at least 1")
    log = RunningResults(args.results_dir, cfg, args.exp_times)
    for rep in range(1, args.exp_times + 1):
        rep_cfg = cfg.model_copy(update={"seed": cfg.seed + rep - 1})
        print(f"repetition {rep}/{args.exp_times} (seed {rep_cfg.seed})", flush=True)
        summary, run_dir = run_once(args, rep_cfg, last=rep == args.exp_times)
        if summary.get("stop_reason") == "interrupted":
            return exit_code(summary, run_dir)  # no mean over an interrupted series
        log.add(rep, rep_cfg, summary, run_dir)
    log.finish()
    print(f"{args.exp_times} repetitions (mean ± std): {log.describe()}; appended to {log.path}")
    return 0


def run_once(args: argparse.Namespace, cfg: Any, last: bool) -> tuple[dict[str, Any], Any]:
    """One experiment through the library (:func:`pbtune.api.experiment.run_experiment`);
    after the ``last`` one the local Ray instance stops while the plots are drawn."""
    from pbtune.api.experiment import run_experiment

    return run_experiment(cfg, args.results_dir, quiet=args.quiet, tensorboard=args.tensorboard,
                          plots=not args.no_plots, release_ray=last)


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
