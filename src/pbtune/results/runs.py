"""``pbtune runs``: the past runs under a results root, newest first.

Why: after a week of experiments the results root holds dozens of timestamped directories; finding
"the run with the best accuracy on the cluster last Tuesday" should not need a notebook. Each run
is described from its own files — ``summary.json`` (best metric, wall time, trials), ``meta.json``
(start time) and ``config.yaml`` (workload) — so a run that crashed before writing its summary is
still listed, marked ``incomplete``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pbtune.errors import UserError


@dataclass
class RunInfo:
    """One row of ``pbtune runs``."""

    experiment: str
    run_id: str
    path: Path
    started: float  # unix seconds
    workload: str
    trials: int | None
    metric: str
    best: float | None
    wall_s: float | None
    status: str  # finished | incomplete | interrupted


class DamagedRun(ValueError):
    """A run directory whose files cannot be read; the message names the file."""


def _read_json(path: Path, required: bool = False) -> dict[str, Any]:
    """A JSON object file; ``{}`` when absent (not yet written) unless ``required``."""
    if not path.exists() and not required:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DamagedRun(f"{path.name} is unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise DamagedRun(f"{path.name} is not a JSON object")
    return data


def _workload(config: Path) -> tuple[str, str, int | None]:
    """``(workload, metric, population)`` from ``config.yaml``."""
    import yaml

    try:
        data = yaml.safe_load(config.read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise DamagedRun(f"config.yaml is unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise DamagedRun("config.yaml is not a mapping")
    population = data.get("population")
    return (str(data.get("workload", "?")), str(data.get("metric") or ""),
            population if isinstance(population, int) else None)


def describe_run(run_dir: Path) -> RunInfo:
    """What ``pbtune runs`` shows for one run directory.

    Raises:
        DamagedRun: ``config.yaml``, ``meta.json`` or ``summary.json`` cannot be read.
    """
    summary = _read_json(run_dir / "summary.json")
    meta = _read_json(run_dir / "meta.json", required=True)
    workload, metric, population = _workload(run_dir / "config.yaml")
    started = meta.get("started_unix")
    if not isinstance(started, int | float):
        started = (run_dir / "config.yaml").stat().st_mtime
    best = summary.get("best")
    best = best.get("metric") if isinstance(best, dict) else None
    wall_s = summary.get("wall_s")
    trials = summary.get("trials", population)
    status = "incomplete" if not summary else (
        "interrupted" if summary.get("stop_reason") == "interrupted" else "finished")
    return RunInfo(
        experiment=run_dir.parent.name, run_id=run_dir.name, path=run_dir, started=float(started),
        workload=Path(workload).name if ":" in workload else workload,
        trials=trials if isinstance(trials, int) else None,
        metric=str(summary.get("metric") or metric),
        best=float(best) if isinstance(best, int | float) else None,
        wall_s=float(wall_s) if isinstance(wall_s, int | float) else None, status=status)


def find_runs(root: str | Path, damaged: list[str] | None = None) -> list[RunInfo]:
    """Every run directory (``<root>/<experiment>/<run-id>`` with a ``config.yaml``), newest first.

    ``root`` may also be one experiment's directory. Replay directories (``replay_*``) and other
    sub-directories without ``config.yaml`` are skipped; so are damaged run directories, each
    named in ``damaged`` (``"<dir>: <what is wrong>"``) when a list is given.

    Raises:
        UserError: ``root`` does not exist or is not a directory.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"results root {root} does not exist or is not a directory; pass the "
                        "directory given to `pbtune run --results-dir` (default ./results)")
    found = {p.parent for p in root.glob("*/*/config.yaml")}
    found |= {p.parent for p in root.glob("*/config.yaml")}
    runs = []
    for d in sorted(found):
        if not (d / "meta.json").is_file():
            continue
        try:
            runs.append(describe_run(d))
        except DamagedRun as exc:
            if damaged is not None:
                damaged.append(f"{d}: {exc}")
    return sorted(runs, key=lambda r: (r.started, r.run_id), reverse=True)


def format_runs(runs: list[RunInfo]) -> str:
    """A plain table, one run per line (fixed columns, ``-`` for missing values)."""
    header = ["experiment", "run id", "date", "workload", "trials", "best", "wall", "status"]
    rows = []
    for run in runs:
        best = "-" if run.best is None or not math.isfinite(run.best) else (
            f"{run.metric} {run.best:.4g}")
        wall = "-" if run.wall_s is None else f"{run.wall_s:.1f}s"
        date = datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M")
        rows.append([run.experiment, run.run_id, date, run.workload,
                     "-" if run.trials is None else str(run.trials), best, wall, run.status])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])
