"""What a trial state of gigabytes costs the engine today (issue 19's baseline).

Why: a transformer fine-tune's state (BLOOM-560M + AdamW: ~6.7 GB) is three orders of magnitude
larger than anything the engine has met. Today every segment's end puts a copy of the trial's
state into Ray's object store (the coordinator's recovery point and exploit donor), and the
driver fetches states to write checkpoints. This benchmark measures that path with a synthetic
state, so the new path (issue 19: the state stays on its worker, the donor's state goes once to
its target, workers write their own checkpoints) can be compared with it side by side.

Setup: ``LargeState`` (numpy, no torch): a float32 blob of ``--state-mb`` MB plus a scalar that
climbs by ``lr`` per iteration; each iteration sleeps ``--compute-s`` s (the "training") and
touches the blob, so every state differs. 4 trials on 2 workers, perturbation every 2 iterations
(one exploit per boundary at quantile 0.25), checkpoints only at the end.

Printed, for today's path (``resources.state_on_worker: never``) and the new one (``always``)
side by side at ``--store-mb``, then the new one alone at ``--state-mb`` (today's would not fit
in this machine's memory there), with and without reused copy buffers
(``resources.state_buffers``; ``-nobuf``): peak object-store (plasma) bytes and the issue's
bound on it, (exploits in flight + 1) x state, the exploits in flight being the most donor
copies the engine had in the store at once; peak driver RSS and USS (RSS counts the shared
object-store pages the driver maps when it reads a state zero-copy; USS is its own memory
only); the run's wall and compute; overhead as a share of slot time (1 - efficiency),
overhead seconds per segment and per exploit, and once warm (each trial's first segment, which
builds its workload, left out) per segment and as a share of those segments' compute.

    .venv/bin/python bench/large_state.py                  # 10 s iterations (~18 min)
    .venv/bin/python bench/large_state.py --compute-s 1 --iterations 16   # the worst case
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pbtune.workloads.base import Workload

HERE = Path(__file__).resolve()


class LargeState(Workload):
    """A scalar climbing by ``lr`` per iteration, carried with a blob of ``state_mb`` MB."""

    name: ClassVar[str] = "bench-large-state"
    metrics: ClassVar[dict[str, str]] = {"score": "max", "loss": "min"}
    default_metric: ClassVar[str] = "score"
    hyperparameters: ClassVar[tuple[str, ...]] = ("lr",)
    default_config: ClassVar[dict[str, Any]] = {"lr": 0.1}
    default_param_space: ClassVar[dict[str, Any]] = {"lr": {"uniform": [0.0, 1.0]}}
    default_mutations: ClassVar[dict[str, Any]] = {"lr": {"uniform": [0.0, 1.0]}}
    default_options: ClassVar[dict[str, Any]] = {"state_mb": 64, "compute_s": 1.0}

    @classmethod
    def load_data(cls, options: Any) -> None:
        return None

    def __init__(self, config: Any, *, data: Any = None, options: Any = None, seed: int = 0,
                 device: str = "cpu") -> None:
        super().__init__(config, data=data, options=options, seed=seed, device=device)
        # Touched memory, as a real model's weights are (np.zeros would map untouched pages
        # and make the first copy of each state look slower than any later one).
        self.blob = np.full(int(self.options["state_mb"]) * 2**20 // 4, 0.5, dtype=np.float32)
        self.value = 0.0

    def train(self, iterations: int = 1) -> dict[str, float]:
        for _ in range(iterations):
            time.sleep(float(self.options["compute_s"]))
            self.value += float(self.config["lr"])
            self.blob[self.iteration % self.blob.size] += 1.0
            self.iteration += 1
        return {"loss": -self.value}

    def evaluate(self) -> dict[str, float]:
        return {"score": self.value, "loss": -self.value}

    def get_state(self) -> dict[str, Any]:
        return {"blob": self.blob.copy(), "value": self.value, "iteration": self.iteration,
                "config": dict(self.config)}

    def state_view(self) -> dict[str, Any]:
        """get_state() without the copy: lets a worker copy into memory it reuses."""
        return {"blob": self.blob, "value": self.value, "iteration": self.iteration,
                "config": dict(self.config)}

    def set_state(self, state: Any, *, include_rng: bool = True) -> None:
        # Into the blob this trial has (as torch's load_state_dict copies into parameters):
        # new memory costs a page fault per 4 KB.
        if self.blob.shape == np.shape(state["blob"]):
            np.copyto(self.blob, state["blob"])
        else:
            self.blob = np.array(state["blob"], copy=True)
        self.value, self.iteration = float(state["value"]), int(state["iteration"])
        self.config.update(state["config"])

    def apply_hyperparameters(self, config: Any) -> None:
        self.check_hyperparameters(config)
        self.config.update(config)


class Peaks:
    """Polls the object store's footprint and this process's RSS every ``interval`` s.

    The object store is measured as the growth of ``/dev/shm`` since the start: Ray's plasma
    arena is a file there whose pages stay allocated once touched, so this is the store's
    high-water mark (Ray's own ``memory_summary`` needs grpc, which a minimal install lacks).
    """

    def __init__(self, interval: float = 0.25) -> None:
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.plasma = self.rss = self.uss = 0  # uss: the driver's own pages, no shared memory
        self._base = shutil.disk_usage("/dev/shm").used
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        polls = 0
        while not self._stop.is_set():
            self.rss = max(self.rss, self.process.memory_info().rss)
            if polls % 4 == 0:  # USS reads /proc/<pid>/smaps: costly, so once a second
                self.uss = max(self.uss, self.process.memory_full_info().uss)
            polls += 1
            self.plasma = max(self.plasma, shutil.disk_usage("/dev/shm").used - self._base)
            self._stop.wait(self.interval)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def copy_cost(state_mb: int) -> tuple[float, float]:
    """Seconds for one get_state() of the workload: what every copy of a state costs here."""
    workload = LargeState({"lr": 0.1}, options={"state_mb": state_mb, "compute_s": 0.0})
    start = time.perf_counter()
    state = workload.get_state()
    fresh = time.perf_counter() - start
    del state
    start = time.perf_counter()
    state = workload.get_state()
    again = time.perf_counter() - start
    del state, workload
    return fresh, again


def measure(mode: str, state_mb: int, args: Any, buffers: int = 2) -> dict[str, Any]:
    """One run with ``resources.state_on_worker: mode`` and ``resources.state_buffers``; its
    peaks and summary numbers."""
    import json
    import tempfile

    import ray

    import pbtune

    results = args.results or tempfile.mkdtemp(prefix="pbtune-large-state-")
    peaks = Peaks()  # before Ray starts: its arena is part of what is measured
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with peaks:
            result = pbtune.run(workload=f"{HERE}:LargeState", results_dir=results,
                                progress=False, plots=False, overrides={
                "population": 4, "resources.slots": 2, "resources.reserve_cpus": 0,
                "resources.state_on_worker": mode, "resources.state_buffers": buffers,
                "stop.max_iterations": args.iterations, "stop.metric_threshold": None,
                "pbt.perturbation_interval": 2, "pbt.quantile_fraction": 0.25,
                "checkpoint_interval": args.checkpoint_interval or args.iterations,
                "options": {"state_mb": state_mb, "compute_s": args.compute_s}})
        s = result.summary
        rows = [json.loads(x) for x in (result.run_dir / "pbt_global.txt").read_text()
                .splitlines()]
        steady = steady_overhead(result.run_dir)
        segments = len((result.run_dir / "timeline.csv").read_text().splitlines()) - 1
    finally:
        ray.shutdown()
        if args.results is None:
            shutil.rmtree(results, ignore_errors=True)
    per_boundary: dict[int, int] = {}
    for row in rows:
        per_boundary[row[2]] = per_boundary.get(row[2], 0) + 1
    # Exploits in flight at once: what the engine counted (donor copies alive together), else
    # (today's path: no exports) the most exploits decided at one boundary.
    in_flight = s.get("held_states", {}).get("exports_in_flight_peak",
                                                max(per_boundary.values(), default=0))
    slot_s = s["slots"] * s["wall_s"]
    label = mode if mode == "never" or buffers else f"{mode}-nobuf"
    return {"mode": label, "state_mb": state_mb, "plasma": peaks.plasma, "rss": peaks.rss,
            "uss": peaks.uss, "wall_s": s["wall_s"], "compute_s": s["compute_s"],
            "overhead": (slot_s - s["compute_s"]) / slot_s, "overhead_s": slot_s - s["compute_s"],
            "exploits": s["exploits"], "in_flight": in_flight,
            "steady": steady, "segments": segments}


def steady_overhead(run_dir: Path) -> tuple[float, float, float]:
    """Once warm: overhead per segment (s; a segment's wall minus its compute), as a share of
    those segments' compute, and its median (s), over every segment but each trial's first
    (which builds the workload and grows the worker's memory: costs a run pays once per trial
    and worker). The median shows the steady state: the mean still carries the copies each
    worker takes into new memory until its copy buffers exist."""
    import pandas as pd

    rows = pd.read_csv(run_dir / "trials.csv")
    segments = pd.read_csv(run_dir / "timeline.csv")
    overhead, compute = [], 0.0
    for trial, group in segments.sort_values("start_s").groupby("trial_id"):
        done = 0
        mine = rows[rows["trial_id"] == trial]
        for k, seg in enumerate(group.itertuples()):
            spent = mine[(mine["iteration"] > done) & (mine["iteration"] <= seg.iteration)][
                "time_this_iter_s"].sum()
            if k > 0:
                overhead.append(seg.end_s - seg.start_s - spent)
                compute += spent
            done = seg.iteration
    return (sum(overhead) / max(1, len(overhead)), sum(overhead) / max(compute, 1e-9),
            statistics.median(overhead) if overhead else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-mb", type=int, default=1536,
                        help="the new path's state size (MB)")
    parser.add_argument("--store-mb", type=int, default=512,
                        help="the state size both paths run at, side by side (today's path "
                             "needs about 13x this in memory: 1536 does not fit in 24 GiB)")
    parser.add_argument("--compute-s", type=float, default=10.0,
                        help="seconds of 'training' per iteration (a model whose state is "
                             "1.5 GB, ~130M parameters with Adam, takes far longer per "
                             "save/eval/report cycle; 1 s shows the worst case)")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--checkpoint-interval", type=int, default=None,
                        help="iterations between checkpoints (default: only at the end)")
    parser.add_argument("--results", default=None,
                        help="keep the runs here (default: a temporary folder, deleted after: "
                             "its checkpoints are 4 states of --state-mb each, or more)")
    parser.add_argument("--only-new", action="store_true",
                        help="run the new path only, at --state-mb (long iterations)")
    parser.add_argument("--no-compare-buffers", action="store_true",
                        help="skip the new path's run without reused copy buffers "
                             "(resources.state_buffers: 0)")
    args = parser.parse_args()
    copy_s = copy_cost(args.state_mb)
    runs = [] if args.only_new else [measure("never", args.store_mb, args),
                                     measure("always", args.store_mb, args)]
    if args.state_mb != args.store_mb or args.only_new:
        runs.append(measure("always", args.state_mb, args))
    if not args.no_compare_buffers:  # the same without reused copy buffers
        runs.append(measure("always", args.state_mb, args, buffers=0))
    print(f"\none copy of a {args.state_mb} MB state (get_state) here: {copy_s[0]:.2f} s into "
          f"fresh memory, {copy_s[1]:.2f} s into memory just freed")
    print(f"\n4 trials on 2 workers, {args.iterations} iterations of {args.compute_s} s, "
          f"perturbation every 2; never = today's path (a snapshot in the object store after "
          f"every segment), always = states stay on their workers")
    print(f"{'path':<13} {'state':>7} {'plasma peak':>12} {'bound':>8} {'driver RSS':>11} "
          f"{'driver USS':>11} {'wall s':>7} {'compute s':>10} {'overhead':>9} "
          f"{'s/segment':>10} {'warm s/seg':>11} {'warm ovh':>9} {'warm med s':>11} "
          f"{'exploits':>9} {'s/exploit':>10}")
    for r in runs:
        bound = (r["in_flight"] + 1) * r["state_mb"] / 1024  # GB: (exploits in flight + 1) x state
        print(f"{r['mode']:<13} {r['state_mb']:>5} M {r['plasma'] / 2**30:>10.2f} G "
              f"{bound:>6.2f} G {r['rss'] / 2**20:>9.0f} M {r['uss'] / 2**20:>9.0f} M "
              f"{r['wall_s']:>7.1f} {r['compute_s']:>10.1f} {r['overhead']:>9.2%} "
              f"{r['overhead_s'] / r['segments']:>10.2f} {r['steady'][0]:>11.2f} "
              f"{r['steady'][1]:>9.2%} {r['steady'][2]:>11.2f} {r['exploits']:>9} "
              f"{r['overhead_s'] / max(1, r['exploits']):>10.2f}")


if __name__ == "__main__":
    main()
