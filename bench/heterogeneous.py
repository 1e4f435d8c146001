"""Makespan of one PBT budget on a two-speed cluster: fifo vs speed-aware vs Ray Tune's PBT.

Why: on a heterogeneous cluster PBT's generations end at a barrier (every live trial must reach the
perturbation boundary), so *which* worker starts the last segments decides the makespan. This
benchmark measures, in one run on one simulated cluster, how close each scheduler gets to the ideal
work-conserving bound.

Setup (one machine, so the slowness is simulated and the workload is sleep-dominated: 4 workers on
2 real cores would otherwise measure CPU contention, not scheduling):

* a ``ray.cluster_utils.Cluster``: a head with 0 CPUs (the driver only), 2 *fast* and 2 *slow*
  nodes of 1 CPU each; the slow ones carry the custom resource ``slow``;
* the toy Counter (``tests/engines/toy_workload.py``) sleeping ``--sleep`` s per iteration, with
  the per-node option ``slowdown: {"slow": 3.0}``: iterations on slow nodes take 3× as long, for
  pbtune's workers and Tune's trainables alike (both resolve it on their node);
* the same budget for all: ``--trials`` trials × ``--iterations`` iterations, perturbation interval
  ``--interval``, quantile 0.25, the same initial configs and seeds.

Measured: ``makespan`` = pbtune's engine loop (workers started; ``startup`` shown apart) and Tune's
``tuner.fit()``; ``end to end`` adds pbtune's start-up. The bound is total work / total speed:
``N / (n_fast / c_fast + n_slow / c_slow)`` with ``N`` iterations and ``c`` the median measured
seconds per iteration on each kind of node (from the speed-aware run); no schedule with these
workers can beat it (it ignores barriers and indivisible segments). Target: speed-aware within
10 % of the bound and ahead of Ray Tune.

``--scenario mixed`` (issue 15): one population on worker *shapes* — a node with a (Ray logical)
GPU whose single GPU worker is 10× faster than each of three 1-CPU CPU workers, as a GPU is next to
CPU cores (``resources.gpus_per_trial: 1``, ``cpu_workers: auto``, ``slowdown: {"slow": 10}`` on
the CPU nodes). The same bound and target apply; Ray Tune is skipped (one shape per run).

Run from the repository root: ``.venv/bin/python bench/heterogeneous.py [--skip-tune]
[--scenario mixed]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
WORKLOAD = f"{REPO / 'tests' / 'engines' / 'toy_workload.py'}:Counter"
SLOWDOWN = 3.0  # slow nodes take this many times as long per iteration
FAST_NODES = SLOW_NODES = 2
OBJECT_STORE = 80 * 2**20  # bytes per simulated node (several raylets share this machine)
TARGET = 1.10  # speed-aware makespan / bound


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--interval", type=int, default=2)
    p.add_argument("--sleep", type=float, default=0.2, help="s per iteration on a fast node")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-tune", action="store_true")
    p.add_argument("--strict-barriers", action="store_true",
                   help="also run speed-aware with pbt.early_release off (a row of its own)")
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--scenario", choices=("two-speed", "mixed"), default="two-speed",
                   help="two-speed: 2 fast + 2 slow CPU nodes; mixed: 1 GPU worker 10x faster "
                        "than 3 CPU workers")
    return p.parse_args(argv)


MIXED_SLOWDOWN = 10.0  # mixed scenario: a CPU worker takes this many times the GPU worker's time
MIXED_CPU_NODES = 3


def build_config(args: argparse.Namespace, scheduling: str, early_release: bool = True) -> Any:
    from pbtune.config import load_config, resolve

    mixed = args.scenario == "mixed"
    slowdown = MIXED_SLOWDOWN if mixed else SLOWDOWN
    sets = {"pbt.early_release": early_release, "workload": WORKLOAD, "engine": "native",
            "seed": args.seed,
            "population": args.trials, "scheduling": scheduling, "resources.slots": None,
            "resources.cpus_per_trial": 1, "stop.max_iterations": args.iterations,
            "stop.metric_threshold": None, "pbt.perturbation_interval": args.interval,
            "pbt.quantile_fraction": 0.25, "pbt.resample_probability": 0.25,
            "param_space": {"lr": {"uniform": [0.0, 1.0]}},
            "pbt.hyperparam_mutations": {"lr": {"uniform": [0.0, 1.0]}},
            "options": {"sleep": args.sleep, "slowdown": {"slow": slowdown}}}
    if mixed:
        sets.update({"resources.gpus_per_trial": 1, "resources.cpu_workers": "auto"})
    return resolve(load_config(None, [f"{k}={json.dumps(v)}" for k, v in sets.items()], env={}))


class Rows:
    """Engine callback keeping (worker, seconds per iteration) of every result row."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None  # every other hook: nothing to do

    def __init__(self) -> None:
        self.rows: list[tuple[int, float]] = []

    def on_result(self, trial: Any, row: dict[str, Any]) -> None:
        self.rows.append((int(row["worker"]), float(row["time_this_iter_s"])))


def run_pbtune(cfg: Any, slow_nodes: set[str]) -> dict[str, Any]:
    import time

    from pbtune.engines import create_engine

    rows = Rows()
    start = time.perf_counter()
    engine = create_engine(cfg, [rows])
    engine.prepare()
    slow = {w["index"] for w in engine.pool.describe() if w["node_id"] in slow_nodes}
    summary = engine.run()
    summary["shapes"] = sorted({str(w.get("shape")) for w in engine.pool.describe()})
    summary["end_to_end_s"] = time.perf_counter() - start
    per_iter = {kind: [s for w, s in rows.rows if (w in slow) == (kind == "slow")]
                for kind in ("fast", "slow")}
    summary["s_per_iter"] = {k: statistics.median(v) for k, v in per_iter.items() if v}
    summary["workers"] = {"fast": engine.pool.size - len(slow), "slow": len(slow)}
    return summary


def run_tune(cfg: Any, slots: int) -> dict[str, Any]:
    import _tune_baseline
    from engine_vs_tune import plain

    from pbtune.engines.node_options import driver_options
    from pbtune.engines.population import initial_trials
    from pbtune.workloads import get

    trials = initial_trials(cfg)
    options = plain(cfg.options)
    return _tune_baseline.run_tune_pbt(
        workload=WORKLOAD, options=options, data=get(WORKLOAD).load_data(driver_options(options)),
        initial_configs=[t.config for t in trials], seeds=[t.seed for t in trials],
        mutations=plain(cfg.pbt.hyperparam_mutations), metric=cfg.metric,
        iterations=cfg.stop.max_iterations, interval=cfg.pbt.perturbation_interval,
        quantile_fraction=cfg.pbt.quantile_fraction,
        resample_probability=cfg.pbt.resample_probability, slots=slots, seed=cfg.seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from engine_vs_tune import _quiet_environment

    _quiet_environment()  # before Ray starts: nodes inherit PYTHONPATH (bench/ for Tune)
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": OBJECT_STORE})
    results: dict[str, dict[str, Any]] = {}
    mixed = args.scenario == "mixed"
    fast_nodes, slow_count = (1, MIXED_CPU_NODES) if mixed else (FAST_NODES, SLOW_NODES)
    if mixed:
        args.skip_tune = True  # Tune runs one resource shape for every trial
    try:
        for _ in range(fast_nodes):  # mixed: a GPU node (Ray logical GPU; the toy needs no CUDA)
            cluster.add_node(num_cpus=1, num_gpus=1 if mixed else 0,
                             object_store_memory=OBJECT_STORE)
        slow_nodes = {cluster.add_node(num_cpus=1, resources={"slow": 1},
                                       object_store_memory=OBJECT_STORE).node_id
                      for _ in range(slow_count)}
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        for policy in ("fifo", "speed-aware"):
            results[policy] = run_pbtune(build_config(args, policy), slow_nodes)
        if args.strict_barriers:  # the same without early release: what it saves
            results["strict"] = run_pbtune(build_config(args, "speed-aware", False), slow_nodes)
        if not args.skip_tune:
            results["tune"] = run_tune(build_config(args, "fifo"), fast_nodes + slow_count)
    finally:
        ray.shutdown()
        cluster.shutdown()

    ref = results["speed-aware"]
    c_fast, c_slow = ref["s_per_iter"]["fast"], ref["s_per_iter"]["slow"]
    n_iter = args.trials * args.iterations
    bound = n_iter / (ref["workers"]["fast"] / c_fast + ref["workers"]["slow"] / c_slow)
    kinds = (f"{fast_nodes} GPU-shape + {slow_count} CPU workers ({', '.join(ref['shapes'])}), "
             f"slowdown {MIXED_SLOWDOWN:g}") if mixed else (
        f"{fast_nodes} fast + {slow_count} slow workers (slowdown {SLOWDOWN:g})")
    print(f"heterogeneous [{args.scenario}]: {args.trials} trials x {args.iterations} iterations, "
          f"interval {args.interval}; {kinds}; measured s/iteration fast {c_fast:.3f}, slow "
          f"{c_slow:.3f} (x{c_slow / c_fast:.2f})")
    head = (f"{'scheduler':<22}{'makespan s':>12}{'/ bound':>9}{'end to end s':>14}"
            f"{'exploits':>10}{'iters':>7}")
    lines = ["", head, "-" * len(head),
             f"{'ideal bound':<22}{bound:>12.2f}{1.0:>9.2f}{'-':>14}{'-':>10}{n_iter:>7}"]
    labels = {"fifo": "pbtune fifo", "speed-aware": "pbtune speed-aware", "tune": "Ray Tune PBT",
              "strict": "speed-aware, no release"}
    for name, row in results.items():
        makespan = row["wall_s"]
        e2e = row.get("end_to_end_s", makespan)
        lines.append(f"{labels[name]:<22}{makespan:>12.2f}{makespan / bound:>9.2f}{e2e:>14.2f}"
                     f"{row['exploits']:>10}{row['iterations']:>7}")
    print("\n".join(lines))
    checks = {f"speed-aware makespan <= {TARGET:.2f} x bound": ref["wall_s"] <= TARGET * bound}
    if "tune" in results:
        checks["speed-aware end to end < Ray Tune"] = ref["end_to_end_s"] < results["tune"][
            "wall_s"]
        if results["tune"].get("errors"):
            print(f"  tune: {len(results['tune']['errors'])} trial(s) FAILED: "
                  f"{results['tune']['errors'][0]}")
    print()
    print("\n".join(f"{'PASS' if ok else 'FAIL'}  {k}" for k, ok in checks.items()))
    ratio = results["fifo"]["wall_s"] / ref["wall_s"]
    print(f"fifo / speed-aware makespan: {ratio:.2f}")
    if args.out is not None:
        args.out.write_text(json.dumps({"bound_s": bound, "results": results, "checks": checks},
                                       indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
