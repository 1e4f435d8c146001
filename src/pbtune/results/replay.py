"""Replay: retrain one trial from scratch following its recorded hyperparameter schedule (no Ray).

Why: PBT finds a *schedule*, not a config — the best trial's weights went through several
configs, inherited through exploits. Replaying the schedule in one process shows whether the
schedule alone reproduces the result (the question Ray's ``PopulationBasedTrainingReplay``
answers) and yields a single model trained without a population.

Schedule semantics follow Ray Tune's ``PopulationBasedTrainingReplay`` exactly: the policy file's
rows are ``[target_tag, donor_tag, target_iteration, donor_iteration, old_config, new_config]``;
training starts with the first row's ``old_config`` (the donor's config — the root of the
lineage) and switches to a row's ``new_config`` once iteration ``donor_iteration`` has completed
(the weights the target inherited were the donor's at that iteration), so iteration
``donor_iteration + 1`` is the first trained with it. A trial that never exploited has no policy
file and keeps its initial config (``trials.csv`` at iteration 1) throughout. Only the workload's
tunable hyperparameters are applied (a Ray Tune config may carry other keys; they are listed as
ignored in the replay's summary).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbtune.engines.base import TERMINATED, Trial
from pbtune.errors import UserError
from pbtune.workloads.iteration import run_iteration


@dataclass
class Schedule:
    """A schedule: the ``initial`` config, then ``(after_iteration, config)`` switches."""

    initial: dict[str, Any]
    changes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    source: str = ""

    def config_for(self, iteration: int) -> dict[str, Any]:
        """The config iteration ``iteration`` (1-based) is trained with."""
        config = dict(self.initial)
        for after, new in self.changes:
            if after < iteration:
                config = dict(new)
        return config


def read_policy_file(path: str | Path) -> Schedule:
    """Parse a ``pbt_policy_*.txt`` (pbtune's or Ray Tune's; the format is the same).

    Raises:
        UserError: the file is missing, empty, or a line is not a 6-element JSON list.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"policy file {path} does not exist; pass a pbt_policy_<trial>.txt from a "
                        "pbtune run directory or a Ray Tune experiment")
    initial: dict[str, Any] | None = None
    changes: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            _target, _donor, _t_iter, d_iter, old, new = row
            if not isinstance(old, dict) or not isinstance(new, dict):
                raise ValueError("configs are not objects")
            d_iter = int(d_iter)
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path}:{number} is not a PBT policy row [target, donor, "
                            f"target_iteration, donor_iteration, old_config, new_config] ({exc})"
                            ) from None
        if initial is None:
            initial = dict(old)
        changes.append((d_iter, dict(new)))
    if initial is None:
        raise UserError(f"policy file {path} is empty: the trial never exploited, so there is no "
                        "schedule to replay (replay the run directory with --trial instead)")
    return Schedule(initial, changes, str(path))


def trial_schedule(run_dir: Path, trial_id: str) -> tuple[Schedule, int]:
    """The schedule of ``trial_id`` in a pbtune run directory and its last recorded iteration."""
    from pbtune.results.plots import read_trials

    frame = read_trials(run_dir)
    rows = frame[frame["trial_id"] == trial_id]
    if rows.empty:
        known = ", ".join(sorted(frame["trial_id"].unique())) or "none"
        raise UserError(f"trial {trial_id!r} has no rows in {run_dir / 'trials.csv'}; "
                        f"trials there: {known}")
    last = int(rows["iteration"].max())
    policy = run_dir / f"pbt_policy_{trial_id}.txt"
    if policy.is_file() and policy.read_text().strip():
        return read_policy_file(policy), last
    first = rows.sort_values("iteration").iloc[0]
    initial = {c.removeprefix("config/"): (first[c].item() if hasattr(first[c], "item")
                                           else first[c])
               for c in rows.columns if c.startswith("config/")}
    return Schedule(initial, [], f"{run_dir / 'trials.csv'} (iteration 1; no exploits)"), last


def trial_seed(run_dir: Path, trial_id: str, default: int) -> int:
    """The trial's own seed from the journal's start event (``default`` when unavailable)."""
    path = run_dir / "journal.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "start":
                for trial in event.get("trials", []):
                    if trial.get("trial_id") == trial_id:
                        return int(trial["seed"])
    return default


def replay(cfg: Any, schedule: Schedule, iterations: int, out_dir: Path, *, trial_id: str,
           seed: int, device: str = "cpu", log: Any = None) -> dict[str, Any]:
    """Train one workload for ``iterations`` following ``schedule``; write ``out_dir``'s files.

    ``out_dir`` gets ``config.yaml`` + ``meta.json`` (via the caller), ``trials.csv`` (one row per
    iteration, in the run format), ``schedule.json`` (the switches applied) and ``summary.json``.
    """
    from pbtune.results.writer import ResultsWriter
    from pbtune.workloads import get
    from pbtune.workloads.registry import load_data

    cls = get(cfg.workload)
    tunable = set(cls.hyperparameters)

    def usable(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if not tunable or k in tunable}

    ignored = sorted({k for c in [schedule.initial, *(n for _, n in schedule.changes)]
                      for k in c if tunable and k not in tunable})
    t_start = time.time()
    data = load_data(cls, cfg.options)
    workload = cls(usable(schedule.initial), data=data, options=cfg.options, seed=seed,
                   device=device)
    trial = Trial(trial_id=trial_id, config=dict(workload.config), seed=seed)
    writer = ResultsWriter(out_dir, save_best_model=False)
    writer.on_start({"workers": [{"index": 0, "ip": "local"}], "trials": [trial], "slots": 1,
                     "start_time": t_start})
    metric, mode = cfg.metric, cfg.mode
    best: dict[str, Any] | None = None
    switches: list[dict[str, Any]] = []
    pending = sorted(schedule.changes, key=lambda change: change[0])
    compute_s = 0.0
    value: float | None = None
    for iteration in range(1, iterations + 1):
        while pending and pending[0][0] < iteration:
            after, new = pending.pop(0)
            workload.apply_hyperparameters(usable(new))
            trial.config = dict(workload.config)
            switches.append({"after_iteration": after, "config": usable(new)})
            if log:
                log(f"iteration {iteration}: config {json.dumps(usable(new))}")
        step = run_iteration(workload, metric)
        compute_s += step.elapsed_s
        # ``iteration`` is replay's own count (the schedule is indexed by it); a non-finite
        # metric is recorded and the replay goes on, as the schedule it follows did.
        row = {**step.row, "trial_id": trial_id, "iteration": iteration,
               "config": dict(trial.config), "worker": 0, "node": "local"}
        writer.on_result(trial, row)
        trial.iteration = iteration
        if step.metric_error is not None:
            raise UserError(f"replay of {trial_id}: {step.metric_error}")
        value = step.value
        if best is None or (value > best["metric"] if mode == "max" else value < best["metric"]):
            best = {"trial_id": trial_id, "metric": value, "config": dict(trial.config),
                    "iteration": iteration}
    writer.on_segment(trial, 0, 0.0, time.time() - t_start)
    trial.status = TERMINATED
    (out_dir / "schedule.json").write_text(json.dumps(
        {"source": schedule.source, "initial": usable(schedule.initial), "switches": switches,
         "ignored_keys": ignored}, indent=2) + "\n")
    summary = {"best": best, "metric": metric, "mode": mode,
               "final": {"iteration": iterations, "metric": value},
               "wall_s": round(time.time() - t_start, 3), "compute_s": round(compute_s, 3),
               "slots": 1, "iterations": iterations, "exploits": 0, "trials": 1, "errors": {},
               "stop_reason": "max_iterations", "engine": "replay", "replay_of": schedule.source,
               "seed": seed, "switches": len(switches), "ignored_keys": ignored}
    writer.on_end(summary, None)
    return summary
