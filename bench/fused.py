"""Fused populations on CPU: the quickstart population fused K = 2, 4, 8 against unfused.

Why: ``resources.members_per_worker: K`` trains K trials of a worker as one batched model
(docs/engines.md, "Fused populations"). Issue 21 asks for the quickstart population (8 digits
trials on 2 slots) fused K = 1, 2, 4, 8 against unfused, side by side in one invocation:
trial-iterations per second and the best accuracy.

Two tables, both from this one command:

* **engine**: ``pbtune run`` on the quickstart preset (8 trials, 2 slots, 16 iterations, PBT
  on), in a fresh process per run, alternating, ``--repeats`` times: unfused (K = 1), then
  K = 2, 4, 8 with ``fuse: always`` (the fused path on every round) and K = 4 with ``fuse:
  auto`` (what a user gets by default: timed, the faster way kept). Throughput is
  trial-iterations (rows of trials.csv) per second of the loop (first row's start to last
  row); best accuracy is summary.json's.
* **kernel**: one worker's view without the engine: K digits-cnn trials (or ``mlp`` on
  synthetic FashionMNIST-format files) trained one iteration fused
  (:func:`pbtune.workloads.fusion.train_and_evaluate`) against K one after the other, one
  thread; samples per second and the ratio.

    .venv/bin/python bench/fused.py                  # both tables (~4 min on 2 cores)
    .venv/bin/python bench/fused.py --only kernel    # kernel table only (~30 s)

The GPU counterpart (K = 1...64, fused against K fractional-GPU workers) is bench/gpu_fused.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PBTUNE = Path(sys.executable).with_name("pbtune")
VARIANTS = [("unfused", 1, "never"), ("K=2", 2, "always"), ("K=4", 4, "always"),
            ("K=8", 8, "always"), ("K=4 auto", 4, "auto")]


def engine_once(k: int, fuse: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pbtune-fused-") as results:
        cmd = [str(PBTUNE), "run", "--results-dir", results, "--no-plots", "--quiet",
               "--set", f"resources.members_per_worker={k}", "--set", f"resources.fuse={fuse}"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = time.perf_counter() - start
        (run_dir,) = Path(results).glob("*/*")
        rows = list(csv.DictReader((run_dir / "trials.csv").open()))
        began = min(float(r["timestamp"]) - float(r["time_this_iter_s"]) for r in rows)
        loop = max(float(r["timestamp"]) for r in rows) - began
        best = json.loads((run_dir / "summary.json").read_text())["best"]["metric"]
        return {"rows": len(rows), "loop_s": loop, "end_to_end_s": total,
                "iters_per_s": len(rows) / loop, "best": float(best)}


def engine_table(repeats: int) -> list[dict[str, object]]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in VARIANTS}
    for _ in range(repeats):
        for name, k, fuse in VARIANTS:
            runs[name].append(engine_once(k, fuse))
    base = statistics.median(r["iters_per_s"] for r in runs["unfused"])
    out = []
    for name, k, fuse in VARIANTS:
        rate = statistics.median(r["iters_per_s"] for r in runs[name])
        out.append({"variant": name, "members_per_worker": k, "fuse": fuse,
                    "trial_iters_per_s": round(rate, 2), "vs_unfused": round(rate / base, 2),
                    "best_accuracy": [round(r["best"], 4) for r in runs[name]],
                    "loop_s": round(statistics.median(r["loop_s"] for r in runs[name]), 2)})
    return out


def workload_options(workload: str, data_dir: Path | None = None) -> dict[str, object]:
    """Options for the kernel table: one thread; the vision workloads on synthetic files in
    their real formats (FashionMNIST idx.gz, CIFAR pickles) written once to ``data_dir``."""
    options: dict[str, object] = {"threads": 1}
    if workload in ("mlp-fashionmnist", "resnet18-cifar10"):
        from pbtune.workloads import synthetic

        root = data_dir or Path(tempfile.mkdtemp(prefix="pbtune-fused-data-"))
        if workload == "mlp-fashionmnist":
            synthetic.write_fashion_mnist(root, n_train=3000, n_test=100)
        else:
            synthetic.write_cifar10(root, n_train=3000, n_test=100)
        options.update(data_dir=str(root), download=False, verify_checksums=False,
                       val_size=500, width=16)
    return options


def kernel_table(workload: str, ks: list[int], device: str = "cpu", batch_size: int = 64,
                 repeats: int = 3, steps: int | None = None) -> list[dict[str, object]]:
    """Samples/s of one iteration (train + evaluate) of K trials fused against the same K
    trials one after the other, in this process, on ``device`` (``steps``: iterations of
    that many steps, for smoke runs)."""
    import torch

    from pbtune.workloads import get
    from pbtune.workloads.fusion import train_and_evaluate

    torch.set_num_threads(1)
    options = {**workload_options(workload), "steps_per_iteration": steps}
    cls = get(workload)
    data = cls.load_data(options)

    def timed(fn: object) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    out = []
    for k in ks:
        fused, alone = ([cls({"batch_size": batch_size}, data=data, options=options, seed=i,
                             device=device) for i in range(k)] for _ in range(2))

        def together(ws: list[object] = fused) -> None:
            train_and_evaluate(ws)

        def one_after_other(ws: list[object] = alone) -> None:
            for w in ws:
                w.train(1)  # type: ignore[attr-defined]
                w.evaluate()  # type: ignore[attr-defined]

        timed(together)  # warm-up both ways (allocations, vmap set-up)
        timed(one_after_other)
        f = min(timed(together) for _ in range(repeats))
        a = min(timed(one_after_other) for _ in range(repeats))
        first = fused[0]
        n = first.train_data[0].shape[0] if hasattr(first, "train_data") \
            else first._x["train"].shape[0]
        if first.options.get("steps_per_iteration"):
            n = min(n, int(first.options["steps_per_iteration"]) * batch_size)
        out.append({"workload": workload, "width": options.get("width"), "device": device,
                    "K": k,
                    "fused_samples_per_s": round(k * n / f),
                    "one_after_other_samples_per_s": round(k * n / a),
                    "fused_vs_one_after_other": round(a / f, 2)})
    return out


def print_kernel(rows: list[dict[str, object]]) -> None:
    for r in rows:
        name = f"{r['workload']}" + (f" (width {r['width']})" if r["width"] else "")
        print(f"  {name:28} K={r['K']:<3} fused {r['fused_samples_per_s']:>8} "
              f"samples/s, one after the other {r['one_after_other_samples_per_s']:>8}: "
              f"{r['fused_vs_one_after_other']}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="engine runs per variant")
    parser.add_argument("--only", choices=("engine", "kernel"), default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables as JSON")
    args = parser.parse_args()
    result: dict[str, object] = {}
    if args.only in (None, "kernel"):
        rows = kernel_table("digits-cnn", [1, 2, 4, 8]) + kernel_table("mlp-fashionmnist",
                                                                        [2, 4, 8])
        result["kernel"] = rows
        print("kernel: one iteration of K trials, one thread (train + evaluate)")
        print_kernel(rows)
    if args.only in (None, "engine"):
        rows = engine_table(args.repeats)
        result["engine"] = rows
        print("engine: quickstart (8 digits trials, 2 slots, 16 iterations), pbtune run")
        for r in rows:
            print(f"  {r['variant']:9} {r['trial_iters_per_s']:>6} trial-iterations/s "
                  f"({r['vs_unfused']}x unfused), loop {r['loop_s']} s, "
                  f"best accuracy {r['best_accuracy']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
