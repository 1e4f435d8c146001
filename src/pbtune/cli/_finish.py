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


def interrupted_exit(summary: dict[str, Any], run_dir: Path) -> int:
    """Exit code 130 and the resume command after Ctrl-C; 0 otherwise."""
    if summary.get("stop_reason") != "interrupted":
        return 0
    print(f"interrupted; checkpoints written. Continue with: pbtune resume {run_dir}",
          file=sys.stderr)
    return 130
