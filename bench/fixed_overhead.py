"""The fixed overhead of a run, end to end minus its loop: pbtune's CLI against Ray Tune's PBT.

Why: on a small population most of a short run is not training: imports, starting Ray, starting
workers (each imports torch), drawing plots, stopping Ray, the interpreter's exit. Issue 21 asks
that pbtune's share be at most Ray Tune's (``reuse_actors=True``) and ≤ 8 s on this machine.

What runs, each in a fresh process, alternating, ``--repeats`` times:

* pbtune: ``pbtune run --results-dir <tmp>``: the quickstart preset exactly as a user runs it
  (8 digits trials on 2 slots, 16 iterations, plots drawn);
* Ray Tune: the same population (pbtune's initial configs and seeds, the same PBT settings and
  workload code, 1 CPU per trial, 2 concurrent) through ``bench/_tune_baseline.py`` with
  ``reuse_actors=True``, in a Python process that starts a local Ray the way Tune's examples do.

Measured the same way on both sides: *end to end* is the process's wall time from launch to exit
(as the user waits for it); *loop* is the span from the start of the first reported iteration to
the last report (pbtune: from ``trials.csv``, each row's ``timestamp - time_this_iter_s``; Tune:
the same from its results, in a callback); *outside* = end to end − loop. Medians are printed.

    .venv/bin/python bench/fixed_overhead.py              # 3 repeats each (~5 min)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PBTUNE = Path(sys.executable).with_name("pbtune")


def pbtune_once() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pbtune-overhead-") as results:
        start = time.perf_counter()
        subprocess.run([str(PBTUNE), "run", "--results-dir", results], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = time.perf_counter() - start
        (run_dir,) = Path(results).glob("*/*")
        rows = list(csv.DictReader((run_dir / "trials.csv").open()))
        began = min(float(r["timestamp"]) - float(r["time_this_iter_s"]) for r in rows)
        loop = max(float(r["timestamp"]) for r in rows) - began
        engine_loop = json.loads((run_dir / "summary.json").read_text())["wall_s"]
    return {"total": total, "loop": loop, "outside": total - loop, "engine_loop": engine_loop}


def tune_once() -> dict[str, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--tune-child"], check=True,
                         capture_output=True, text=True)
    total = time.perf_counter() - start
    loop = json.loads(out.stdout.strip().splitlines()[-1])["loop_s"]
    return {"total": total, "loop": loop, "outside": total - loop}


def tune_child() -> None:
    """One Tune run of the quickstart population (this process is what is timed)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH),
                                                           os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(BENCH))
    import engine_vs_tune

    engine_vs_tune._quiet_environment()
    args = engine_vs_tune.parse_args(["--iterations", "16", "--epochs", "1", "--interval", "2"])
    cfg = engine_vs_tune.build_config(args)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    result = engine_vs_tune.run_tune(cfg, reuse_actors=True, num_to_keep=None)
    print(json.dumps({"loop_s": result["loop_s"], "iterations": result["iterations"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tune-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tune_child:
        tune_child()
        return
    runs: dict[str, list[dict[str, float]]] = {"pbtune": [], "tune": []}
    for _ in range(args.repeats):
        runs["pbtune"].append(pbtune_once())
        runs["tune"].append(tune_once())
    print(f"\nquickstart population (8 digits trials, 2 slots, 16 iterations), "
          f"{args.repeats} runs each, medians (s)")
    print(f"{'engine':<22} {'end to end':>11} {'loop':>7} {'outside':>8}   each run's outside")
    for name, label in (("pbtune", "pbtune run (CLI)"), ("tune", "Ray Tune reuse_actors")):
        rs = runs[name]
        med = {k: statistics.median(r[k] for r in rs) for k in ("total", "loop", "outside")}
        each = ", ".join(f"{r['outside']:.1f}" for r in rs)
        print(f"{label:<22} {med['total']:>11.1f} {med['loop']:>7.1f} {med['outside']:>8.1f}"
              f"   {each}")
    ratio = (statistics.median(r["outside"] for r in runs["pbtune"])
             / statistics.median(r["outside"] for r in runs["tune"]))
    print(f"pbtune outside / Tune outside: {ratio:.2f} (target ≤ 1.00, and pbtune ≤ 8 s)")


if __name__ == "__main__":
    main()
