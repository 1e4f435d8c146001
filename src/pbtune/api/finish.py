"""What ``pbtune run`` and ``pbtune resume`` both print and write around a run.

Why its own module: both commands end a run the same way (the summary lines, exit code 130 with
the resume command after Ctrl-C) and start its journal the same way; importing these from each
other made the two commands a cycle.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


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


def exit_code(summary: dict[str, Any], run_dir: Path) -> int:
    """130 and the resume command after Ctrl-C or SIGTERM; 1 when every trial failed (a run that
    trained nothing must not look like a success to a script or a batch scheduler); else 0."""
    if summary.get("stop_reason") == "interrupted":
        print(f"interrupted; checkpoints written. Continue with: pbtune resume {run_dir}",
              file=sys.stderr)
        return 130
    errors = summary.get("errors") or {}
    if summary.get("trials") and len(errors) >= summary["trials"]:
        first = next(iter(errors.values()), "")
        print(f"error: every trial failed (first: {first}); see {run_dir}/summary.json and "
              f"{run_dir}/trials/<trial>/error.txt", file=sys.stderr)
        return 1
    return 0
