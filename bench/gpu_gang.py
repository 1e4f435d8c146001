"""Gangs on a GPU (issue 20): a trial's segment time in a plain GPU worker and in a gang with NCCL.

Why: a gang's ranks talk over ``torch.distributed`` (NCCL on GPU): a go/done broadcast per
iteration and a gradient all-reduce per optimiser step. A 2-GPU-per-trial gang needs two GPUs;
on a machine with one, this measures what a gang costs over a plain worker at the same work: a
1-rank gang (a real NCCL process group of one) against a single worker, fp16, the same trial.
With 2 or more GPUs it also runs the gang the issue names: W = 2 ranks of one GPU each, against
one GPU with the doubled batch (same samples per step).

Workload: ``digits-cnn`` (bundled data, no download), fp16 on the GPU. Printed: the median and
mean seconds per one-iteration segment of one trial, and the ratio to the single worker.

    .venv/bin/python bench/gpu_gang.py                  # on a GPU machine
    .venv/bin/python bench/gpu_gang.py --cpu            # the same code on CPU (gloo), a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any


def segment_times(handle: Any, config: dict[str, Any], iterations: int) -> list[float]:
    """Seconds of each one-iteration segment of one trial (the first, which builds it, left out)."""
    import ray

    times = []
    for it in range(1, iterations + 2):
        start = time.perf_counter()
        result = ray.get(handle.run.remote("t0", config, 7, it, metric="accuracy",
                                           mode="max")[0])
        assert result["status"] == "ok", result["error"]
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on CPU with gloo (smoke test)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import ray
    import torch

    from pbtune.engines.native.gang import RemoteGangWorker
    from pbtune.engines.native.worker import RemoteWorker
    from pbtune.workloads import get
    from pbtune.workloads.registry import load_data

    gpus = 0 if args.cpu else torch.cuda.device_count()
    if not args.cpu and gpus == 0:
        raise SystemExit("bench/gpu_gang.py: no CUDA GPU here; run it on a GPU node (or --cpu "
                         "for the smoke test)")
    ray.init(num_cpus=4 if args.cpu else None, include_dashboard=False, log_to_driver=False)
    device, gpu = ("cpu", 0) if args.cpu else ("cuda", 1)
    precision = "fp32" if args.cpu else "fp16"
    data = ray.put(load_data(get("digits-cnn"), {}))
    common = dict(shape="bench", precision=precision, gpu_share=gpu, state_on_worker="never")
    base = ("digits-cnn", {"batch_size": args.batch_size}, None, 0, device, 1)
    config = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": args.batch_size}
    rows = []

    single = RemoteWorker.options(num_cpus=1, num_gpus=gpu).remote(*base, **common)
    single.set_data.remote(data)
    rows.append(("single worker", segment_times(single, config, args.iterations)))
    ray.kill(single)

    one = RemoteGangWorker.options(num_cpus=1, num_gpus=gpu).remote(*base, **common, rank=0,
                                                                   world_size=1)
    one.set_data.remote(data)
    ray.get(one.form.remote([]))
    rows.append((f"1-rank gang ({'gloo' if args.cpu else 'NCCL'})",
                 segment_times(one, config, args.iterations)))
    ray.kill(one)

    if args.cpu or gpus >= 2:  # W = 2 ranks of batch b against one process of batch 2b
        ranks = [RemoteGangWorker.options(num_cpus=1, num_gpus=gpu).remote(
            *base, **common, rank=r, world_size=2) for r in range(2)]
        for r in ranks:
            r.set_data.remote(data)
        ray.get(ranks[0].form.remote(ranks[1:]))
        rows.append(("2-rank gang, batch b each", segment_times(ranks[0], config,
                                                                 args.iterations)))
        for r in ranks:
            ray.kill(r)
        double = RemoteWorker.options(num_cpus=1, num_gpus=gpu).remote(*base, **common)
        double.set_data.remote(data)
        rows.append(("single worker, batch 2b", segment_times(
            double, {**config, "batch_size": 2 * args.batch_size}, args.iterations)))
    ray.shutdown()

    name = "CPU (gloo)" if args.cpu else torch.cuda.get_device_name(0)
    print(f"\ndigits-cnn, {precision}, batch {args.batch_size}, on {name}: seconds per "
          f"one-iteration segment over {args.iterations} segments (first left out)")
    print(f"{'setup':<28} {'median s':>9} {'mean s':>8} {'vs single':>10}")
    ref = statistics.median(rows[0][1])
    for label, times in rows:
        med = statistics.median(times)
        print(f"{label:<28} {med:>9.3f} {statistics.mean(times):>8.3f} {med / ref:>10.2f}")


if __name__ == "__main__":
    main()
