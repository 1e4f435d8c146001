"""Fused populations on one GPU: K = 1...64 fused against K separate models / K fractional workers.

Why: a small model leaves a GPU mostly idle (kernel launches, not arithmetic, bound it), which
is where HFTA reports its large gains; issue 21 asks for samples/s for K = 1...64 fused against
K separate fractional-GPU workers on one GPU, from one command. Two tables:

* **kernel**: in this process, one iteration (train + evaluate) of K trials fused
  (:func:`pbtune.workloads.fusion.train_and_evaluate`) against the same K trained one after the
  other, for digits-cnn and a narrow CIFAR ResNet-18 (width 16, BatchNorm per member, on
  synthetic CIFAR-10 pickles written here: nothing is downloaded);
* **engine**: ``pbtune run`` of a K-trial digits population (PBT on, 6 iterations) as K
  workers of 1/K GPU each (``gpus_per_trial: 1/K``, the unfused way to share a GPU) against one
  worker of the whole GPU with ``members_per_worker: K, fuse: always``; samples/s is trained
  samples (rows of trials.csv × training-set size) per second of the loop.

    .venv/bin/python bench/gpu_fused.py --out gpu_fused.json          # on a GPU (~6 min)
    .venv/bin/python bench/gpu_fused.py --device cpu --ks 1 2 --engine-ks 2 --steps 2  # smoke

Record the printed tables in docs/benchmarks.md with the GPU's name.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fused import kernel_table, print_kernel

PBTUNE = Path(sys.executable).with_name("pbtune")
DIGITS_TRAIN = 1437  # digits-cnn's training split (images)


def engine_once(k: int, fused: bool, device: str, iterations: int) -> dict[str, float]:
    cpus = max(1, (os.cpu_count() or 2) - 1)
    gpu = device == "cuda"
    res = {"slots": 1 if fused else k, "reserve_cpus": 1 if cpus > 1 else 0,
           "cpus_per_trial": cpus if fused else round(cpus / k, 4),
           "gpus_per_trial": (1.0 if fused else round(1.0 / k, 6)) if gpu else 0,
           "members_per_worker": k if fused else 1, "fuse": "always" if fused else "never"}
    with tempfile.TemporaryDirectory(prefix="pbtune-gpu-fused-") as tmp:
        cmd = [str(PBTUNE), "run", "--results-dir", tmp, "--no-plots", "--quiet",
               "--set", f"population={k}", "--set", f"stop.max_iterations={iterations}",
               "--set", f"checkpoint_interval={iterations}"]
        cmd += [a for key, value in res.items() for a in ("--set", f"resources.{key}={value}")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: pbtune run failed for K={k} fused={fused}:\n"
                             f"{proc.stderr[-2000:]}")
        (run_dir,) = Path(tmp).glob("*/*")
        rows = list(csv.DictReader((run_dir / "trials.csv").open()))
    began = min(float(r["timestamp"]) - float(r["time_this_iter_s"]) for r in rows)
    loop = max(float(r["timestamp"]) for r in rows) - began
    share = f" of 1/{k} GPU" if gpu else ""
    return {"K": k, "way": f"members_per_worker={k}" if fused else f"{k} workers{share}",
            "trial_iterations": len(rows), "loop_s": round(loop, 2),
            "samples_per_s": round(len(rows) * DIGITS_TRAIN / loop)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--engine-ks", type=int, nargs="*", default=[4, 16, 64])
    parser.add_argument("--iterations", type=int, default=6, help="per trial, engine table")
    parser.add_argument("--steps", type=int, default=None,
                        help="kernel table: iterations of this many steps (smoke runs)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; run on a GPU machine, or pass "
                         "--device cpu for the smoke run")
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    result: dict[str, object] = {"device": name, "kernel": [], "engine": []}
    print(f"kernel ({name}): one iteration of K trials, fused vs one after the other")
    for workload in ("digits-cnn", "resnet18-cifar10"):
        rows = kernel_table(workload, args.ks, device=args.device,
                            batch_size=64 if workload == "digits-cnn" else 128, repeats=2,
                            steps=args.steps)
        print_kernel(rows)
        result["kernel"].extend(rows)  # type: ignore[union-attr]
    print(f"engine ({name}): pbtune run, digits population of K, {args.iterations} iterations")
    for k in args.engine_ks:
        for fused in (False, True):
            start = time.perf_counter()
            row = engine_once(k, fused, args.device, args.iterations)
            row["end_to_end_s"] = round(time.perf_counter() - start, 1)
            result["engine"].append(row)  # type: ignore[union-attr]
            print(f"  K={k:<3} {row['way']:28} {row['samples_per_s']:>8} samples/s "
                  f"(loop {row['loop_s']} s, end to end {row['end_to_end_s']} s)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
