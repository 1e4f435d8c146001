"""``pbtune replay``: retrain one trial from scratch on its recorded schedule, in-process."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from pbtune.cli._common import add_command, add_results_dir
from pbtune.errors import UserError


def _unique(path: Path) -> Path:
    for n in range(1000):
        candidate = path if n == 0 else path.with_name(f"{path.name}_{n}")
        if not candidate.exists():
            return candidate
    raise UserError(f"too many replays named {path}; pass --out")


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay one trial's hyperparameter schedule from scratch, without Ray.

    pbtune replay RUN_DIR --trial t003 follows the trial's pbt_policy file (its initial config is
    the first row's donor config; each row's new config applies after the recorded donor
    iteration) or, if it never exploited, its initial config. pbtune replay --policy-file
    pbt_policy_X.txt --config exp.yaml replays a Ray Tune or pbtune policy file. Writes trials.csv,
    schedule.json and summary.json to the replay directory.
    """
    from pbtune.config import dump_yaml, load_config, resolve
    from pbtune.results import create_run_dir, write_metadata
    from pbtune.results.replay import read_policy_file, replay, trial_schedule, trial_seed

    overrides = list(args.set or [])
    if args.workload:
        overrides.append(f"workload={args.workload}")
    original = None
    if args.policy_file:
        config = args.config or (str(Path(args.run_dir) / "config.yaml") if args.run_dir else None)
        if config is None:
            raise UserError("--policy-file needs --config CONFIG (the experiment's YAML: workload, "
                            "options, metric) or a RUN_DIR holding config.yaml")
        cfg = resolve(load_config(config, overrides))
        schedule = read_policy_file(args.policy_file)
        match = re.match(r"pbt_policy_(.+)\.txt$", Path(args.policy_file).name)
        trial_id = args.trial or (match.group(1) if match else "replay")
        iterations = args.iterations or cfg.stop.max_iterations
        seed = cfg.seed if args.seed is None else args.seed
        out = Path(args.out) if args.out else create_run_dir(args.results_dir, f"{cfg.name}-replay")
    elif args.run_dir:
        run_dir = Path(args.run_dir).expanduser()
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir} is not a run directory (no config.yaml); pass the "
                            "directory printed by `pbtune run`, or --policy-file FILE "
                            "--config CONFIG")
        if not args.trial:
            raise UserError("which trial? pass --trial ID (e.g. the best trial in summary.json)")
        cfg = resolve(load_config(str(run_dir / "config.yaml"), overrides, env={}))
        schedule, last = trial_schedule(run_dir, args.trial)
        trial_id = args.trial
        iterations = args.iterations or last
        seed = trial_seed(run_dir, trial_id, cfg.seed) if args.seed is None else args.seed
        out = Path(args.out) if args.out else _unique(run_dir / f"replay_{trial_id}")
        original = (run_dir, trial_id)
    else:
        raise UserError("pass RUN_DIR --trial ID, or --policy-file FILE --config CONFIG")
    if iterations < 1:
        raise UserError(f"--iterations {iterations} must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    write_metadata(out, dump_yaml(cfg), {"replay_of": schedule.source, "trial_id": trial_id})
    print(f"replaying {trial_id} from {schedule.source}: {iterations} iterations, "
          f"{len(schedule.changes)} scheduled switches, seed {seed}", flush=True)
    summary = replay(cfg, schedule, iterations, out, trial_id=trial_id, seed=seed,
                     device=args.device, log=lambda text: print(f"  {text}", flush=True))
    final = summary["final"]["metric"]
    text = f"final {cfg.metric} {final:.4f} at iteration {iterations}"
    if original is not None:
        from pbtune.results.plots import read_trials

        frame = read_trials(original[0])
        rows = frame[frame["trial_id"] == original[1]].sort_values("iteration")
        if cfg.metric in rows:
            text += f" (original run: {float(rows[cfg.metric].iloc[-1]):.4f})"
    print(f"{text}; replay written to {out}")
    return 0


def register(sub: Any) -> None:
    parser = add_command(sub, "replay", cmd_replay)
    parser.add_argument("run_dir", nargs="?", help="a pbtune run directory")
    parser.add_argument("--trial", help="trial id in RUN_DIR (e.g. t003)")
    parser.add_argument("--policy-file", help="a pbt_policy_*.txt (pbtune or Ray Tune format)")
    parser.add_argument("--config", help="experiment YAML for --policy-file (workload, options)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key (dotted)")
    parser.add_argument("--workload", help="workload name or path/to/file.py:ClassName")
    parser.add_argument("--iterations", type=int,
                        help="iterations to train (default: the trial's last recorded iteration, "
                             "or stop.max_iterations with --policy-file)")
    parser.add_argument("--seed", type=int, help="workload seed (default: the trial's own seed)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", help="replay directory (default RUN_DIR/replay_<trial>, or "
                                      "<results-dir>/<name>-replay/<run-id>)")
    add_results_dir(parser)
