"""Soak test of the native engine's driver: a no-op workload, many results, flat memory?

Why: Ray Tune's issues report unbounded driver memory growth on long runs; its release tests
expect 4,800 results/s on 96 CPUs. This runs a 200-trial no-op population for at least 20,000
results with everything a real run does (trials.csv, PBT logs, journal, checkpoints) and prints
the driver's resident-memory growth per 1,000 results after warm-up, and the results/s sustained.

    .venv/bin/python bench/soak.py [--trials 200] [--iterations 100] [--cpus 2]
    .venv/bin/python bench/soak.py --sweep 200,2000,20000   # cost per result vs population
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class Meter:
    """Samples the driver's RSS (MiB) every ``every`` results."""

    def __init__(self, every: int = 1000) -> None:
        import psutil

        self.process, self.every, self.count = psutil.Process(), every, 0
        self.samples: list[tuple[int, float, float]] = []  # (results, rss MiB, time s)

    def on_result(self, trial, row) -> None:
        self.count += 1
        if self.count % self.every == 0:
            self.samples.append((self.count, self.process.memory_info().rss / 2**20,
                                 time.perf_counter()))

    def __getattr__(self, name):  # every other Callback hook: no-op
        return lambda *args: None


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points) or 1.0
    return sum((x - mx) * (y - my) for x, y in points) / den


def run_one(trials: int, iterations: int, cpus: int, warmup: int) -> dict:
    """One soak run on a fresh local Ray; the driver's numbers."""
    import ray

    from pbtune.config import dump_yaml, load_config, resolve
    from pbtune.engines import create_engine
    from pbtune.results import ResultsWriter, create_run_dir, write_metadata

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    sets = {"workload": f"{HERE / 'noop_workload.py'}:Noop", "population": trials,
            "resources.slots": cpus, "resources.reserve_cpus": 0,
            "stop.max_iterations": iterations, "stop.metric_threshold": None,
            "pbt.perturbation_interval": min(10, max(1, iterations // 2)),
            "checkpoint_interval": 50, "param_space": {"lr": {"uniform": [0.0, 1.0]}}}
    cfg = resolve(load_config(None, [f"{k}={json.dumps(v)}" for k, v in sets.items()], env={}))
    meter = Meter()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = create_run_dir(tmp, cfg.name)
        write_metadata(run_dir, dump_yaml(cfg))
        engine = create_engine(cfg, [ResultsWriter(run_dir, save_best_model=False), meter])
        engine.enable_recovery(run_dir)
        summary = engine.run()
        disk = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) / 2**20
    ray.shutdown()
    after = [(n, rss, t) for n, rss, t in meter.samples if n > warmup]
    growth = slope([(n / 1000, rss) for n, rss, _ in after]) if len(after) >= 2 else float("nan")
    rate = ((after[-1][0] - after[0][0]) / (after[-1][2] - after[0][2])
            if len(after) >= 2 else float("nan"))
    return {"trials": trials, "iterations": iterations, "results": meter.count,
            "exploits": summary["exploits"], "slots": summary["slots"], "wall_s": summary["wall_s"],
            "rate": rate, "overall": meter.count / summary["wall_s"], "growth": growth,
            "rss_first": meter.samples[0][1], "rss_last": meter.samples[-1][1],
            "first_at": meter.samples[0][0], "last_at": meter.samples[-1][0], "disk": disk}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5000, help="results before measuring")
    parser.add_argument("--sweep", metavar="P1,P2,...",
                        help="populations to run one after another, each for --sweep-iterations "
                             "iterations per trial: results/s and driver memory per population, "
                             "and each rate over the first")
    parser.add_argument("--sweep-iterations", type=int, default=20,
                        help="iterations per trial in a sweep (the same for every population, so "
                             "per-trial costs such as each trial's final checkpoint weigh the "
                             "same; default 20)")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    if args.sweep:
        return sweep([int(p) for p in args.sweep.split(",")], args.cpus, args.sweep_iterations)
    r = run_one(args.trials, args.iterations, args.cpus, args.warmup)
    print(f"results: {r['results']} ({args.trials} trials x {args.iterations} iterations, "
          f"{r['exploits']} exploits, {r['slots']} slots on {args.cpus} CPUs)")
    print(f"driver RSS: {r['rss_first']:.1f} MiB at {r['first_at']} results, "
          f"{r['rss_last']:.1f} MiB at {r['last_at']}")
    print(f"RSS growth after {args.warmup} warm-up results: {r['growth']:.3f} MiB per 1,000 "
          "results")
    print(f"sustained: {r['rate']:.0f} results/s after warm-up; overall "
          f"{r['overall']:.0f} results/s over {r['wall_s']:.1f} s; run dir {r['disk']:.1f} MiB")
    return 0 if r["results"] >= 20000 else 1


def sweep(populations: list[int], cpus: int, iterations: int) -> int:
    """The population sweep: is the driver's cost per result independent of the population?"""
    rows = []
    for trials in populations:
        results = trials * iterations
        rows.append(run_one(trials, iterations, cpus, warmup=min(5000, results // 10)))
        r = rows[-1]
        print(f"population {trials}: {r['results']} results, {r['rate']:.0f} results/s "
              f"sustained, driver RSS {r['rss_first']:.0f} -> {r['rss_last']:.0f} MiB", flush=True)
    base = rows[0]["rate"]
    print(f"\n{'population':>10} {'iterations':>10} {'results':>8} {'results/s':>10} "
          f"{'vs first':>8} {'RSS MiB':>8} {'MiB/1k res':>10}")
    for r in rows:
        print(f"{r['trials']:>10} {r['iterations']:>10} {r['results']:>8} {r['rate']:>10.0f} "
              f"{r['rate'] / base:>8.2f} {r['rss_last']:>8.0f} {r['growth']:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
