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

Printed: peak object-store (plasma) bytes, peak driver RSS and USS (RSS counts the shared
object-store pages the driver maps when it reads a state zero-copy; USS is its own memory only),
the run's wall and compute, overhead
as a share of slot time (1 - efficiency) and overhead seconds per segment and per exploit.

    .venv/bin/python bench/large_state.py --state-mb 1536
"""

from __future__ import annotations

import argparse
import shutil
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
        self.blob = np.zeros(int(self.options["state_mb"]) * 2**20 // 4, dtype=np.float32)
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

    def set_state(self, state: Any, *, include_rng: bool = True) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-mb", type=int, default=1536)
    parser.add_argument("--compute-s", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--results", default=None,
                        help="keep the run here (default: a temporary folder, deleted after: "
                             "its checkpoints are 4 states of --state-mb each, or more)")
    args = parser.parse_args()
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
                "stop.max_iterations": args.iterations, "stop.metric_threshold": None,
                "pbt.perturbation_interval": 2, "pbt.quantile_fraction": 0.25,
                "checkpoint_interval": args.iterations,
                "options": {"state_mb": args.state_mb, "compute_s": args.compute_s}})
        s = result.summary
    finally:
        ray.shutdown()
        if args.results is None:
            shutil.rmtree(results, ignore_errors=True)
    slot_s = s["slots"] * s["wall_s"]
    overhead = slot_s - s["compute_s"]
    segments = 4 * args.iterations // 2
    print(f"\nstate {args.state_mb} MB, 4 trials on 2 workers, {args.iterations} iterations of "
          f"{args.compute_s} s, perturbation every 2")
    print(f"{'path':<8} {'plasma peak':>12} {'driver RSS':>11} {'driver USS':>11} {'wall s':>7} "
          f"{'compute s':>10} "
          f"{'overhead':>9} {'s/segment':>10} {'exploits':>9} {'s/exploit':>10}")
    print(f"{'today':<8} {peaks.plasma / 2**30:>10.2f} G {peaks.rss / 2**20:>9.0f} M "
          f"{peaks.uss / 2**20:>9.0f} M {s['wall_s']:>7.1f} {s['compute_s']:>10.1f} "
          f"{overhead / slot_s:>9.2%} "
          f"{overhead / segments:>10.2f} {s['exploits']:>9} "
          f"{overhead / max(1, s['exploits']):>10.2f}")


if __name__ == "__main__":
    main()
