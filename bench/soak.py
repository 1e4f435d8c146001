"""Soak test of the native engine's driver: a no-op workload, many results, flat memory?

Why: Ray Tune's issues report unbounded driver memory growth on long runs; its release tests
expect 4,800 results/s on 96 CPUs. This runs a 200-trial no-op population for at least 20,000
results with everything a real run does (trials.csv, PBT logs, journal, checkpoints) and prints
the driver's resident-memory growth per 1,000 results after warm-up, and the results/s sustained.

    .venv/bin/python bench/soak.py [--trials 200] [--iterations 100] [--cpus 2]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5000, help="results before measuring")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    import ray

    from pbtune.config import dump_yaml, load_config, resolve
    from pbtune.engines import create_engine
    from pbtune.results import ResultsWriter, create_run_dir, write_metadata

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    sets = {"workload": f"{HERE / 'noop_workload.py'}:Noop", "population": args.trials,
            "resources.slots": args.cpus, "resources.reserve_cpus": 0,
            "stop.max_iterations": args.iterations, "stop.metric_threshold": None,
            "pbt.perturbation_interval": 10, "checkpoint_interval": 50,
            "param_space": {"lr": {"uniform": [0.0, 1.0]}}}
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
    after = [(n, rss, t) for n, rss, t in meter.samples if n > args.warmup]
    growth = slope([(n / 1000, rss) for n, rss, _ in after]) if len(after) >= 2 else float("nan")
    rate = ((after[-1][0] - after[0][0]) / (after[-1][2] - after[0][2])
            if len(after) >= 2 else float("nan"))
    print(f"results: {meter.count} ({args.trials} trials x {args.iterations} iterations, "
          f"{summary['exploits']} exploits, {summary['slots']} slots on {args.cpus} CPUs)")
    print(f"driver RSS: {meter.samples[0][1]:.1f} MiB at {meter.samples[0][0]} results, "
          f"{meter.samples[-1][1]:.1f} MiB at {meter.samples[-1][0]}")
    print(f"RSS growth after {args.warmup} warm-up results: {growth:.3f} MiB per 1,000 results")
    print(f"sustained: {rate:.0f} results/s after warm-up; overall "
          f"{meter.count / summary['wall_s']:.0f} results/s over {summary['wall_s']:.1f} s; "
          f"run dir {disk:.1f} MiB")
    return 0 if meter.count >= 20000 else 1


if __name__ == "__main__":
    sys.exit(main())
