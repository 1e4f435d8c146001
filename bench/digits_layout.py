"""digits-cnn per-iteration time in NCHW vs channels_last (NHWC) on CPU, side by side.

Why: ``channels_last`` is on by default for digits-cnn on CPU too, because PyTorch's CPU
``max_pool2d`` (with indices, as training needs) is very slow on NCHW tensors of this shape. This
script measures both layouts interleaved in one process (so a change in the machine's speed hits
both alike): one iteration of the benchmark setting (3 epochs at batch 64, then evaluation), and
the max-pool alone (forward + backward on the 64 × 32 × 8 × 8 activations of the second conv).

Run from the repository root: ``.venv/bin/python bench/digits_layout.py [--rounds 8]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def time_iterations(rounds: int) -> dict[str, list[float]]:
    """Seconds per iteration of each layout, alternating layouts every round."""
    from pbtune.workloads.digits import DigitsCNN

    data = DigitsCNN.load_data({})
    config = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 64}
    workloads = {
        name: DigitsCNN(config, data=data, seed=1,
                        options={"epochs_per_iteration": 3, "threads": 1, "channels_last": flag})
        for name, flag in (("NCHW", False), ("NHWC", True))
    }
    times: dict[str, list[float]] = {name: [] for name in workloads}
    for workload in workloads.values():  # warm-up: first-call allocations, kernel selection
        workload.train(1)
        workload.evaluate()
    for _ in range(rounds):
        for name, workload in workloads.items():
            start = time.perf_counter()
            workload.train(1)
            workload.evaluate()
            times[name].append(time.perf_counter() - start)
    return times


def time_max_pool(repeats: int = 200) -> dict[str, float]:
    """Seconds per max_pool2d forward + backward in each layout."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(64, 32, 8, 8)
    out = {}
    for name, fmt in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
        inp = x.contiguous(memory_format=fmt).requires_grad_()
        for _ in range(20):
            F.max_pool2d(inp, 2).sum().backward()
        start = time.perf_counter()
        for _ in range(repeats):
            F.max_pool2d(inp, 2).sum().backward()
        out[name] = (time.perf_counter() - start) / repeats
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8, help="timed iterations per layout")
    args = p.parse_args(argv)
    if args.rounds < 1:
        print(f"--rounds {args.rounds}: must be at least 1", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    times = time_iterations(args.rounds)
    pool = time_max_pool()
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"digits-cnn, 1 thread, {args.rounds} interleaved rounds "
          "(1 iteration = 3 epochs at batch 64 + evaluation)")
    print(f"{'layout':<8}{'median ms':>11}{'min ms':>9}{'max_pool2d fwd+bwd us':>24}")
    for name in times:
        print(f"{name:<8}{1e3 * med[name]:>11.1f}{1e3 * min(times[name]):>9.1f}"
              f"{1e6 * pool[name]:>24.0f}")
    print(f"NCHW / NHWC: iteration {med['NCHW'] / med['NHWC']:.2f}x, "
          f"max_pool2d {pool['NCHW'] / pool['NHWC']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
