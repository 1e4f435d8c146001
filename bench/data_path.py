"""Benchmark the vision data path: throughput vs a PIL DataLoader, memory shared vs per worker.

Why: the vision workloads claim (1) batched crop/flip/normalise on the training device beats
torchvision's per-image PIL transforms in a DataLoader, and (2) sharing the decoded dataset
through Ray's object store keeps a node at ~one copy however many workers train on it. This
script measures both on this machine and prints one table; it is a benchmark, not a test.

The real CIFAR-10 is not needed: a synthetic dataset is written in the *real* on-disk format
(``cifar-10-batches-py`` pickles) to a temporary directory and read back through
``torchvision.datasets.CIFAR10`` (checksum check off), so both paths decode identical files.

Usage: ``.venv/bin/python bench/data_path.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import datasets as tvd
from torchvision import transforms as T

from pbtune.workloads import datasets, synthetic
from pbtune.workloads._torch_utils import seeded_generator
from pbtune.workloads.augment import crop_flip, normalize
from pbtune.workloads.models import build_model
from pbtune.workloads.shared_data import shared_tensor
from pbtune.workloads.vision_presets import ResNet18CIFAR10

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _tensor_batches(x: torch.Tensor, y: torch.Tensor, bs: int, steps: int):
    """The workload's path: shuffled index → uint8 gather → batched crop/flip → normalise."""
    gen, aug = seeded_generator(0), seeded_generator(1)
    order = torch.randperm(len(x), generator=gen)
    for i in range(steps):
        idx = order[(i * bs) % (len(x) - bs):][:bs]
        images = crop_flip(x.index_select(0, idx), aug, padding=4)
        yield normalize(images, MEAN, STD), y.index_select(0, idx)


def _loader_batches(root: str, bs: int, steps: int):
    """torchvision's classic recipe: CIFAR10 dataset + PIL transforms + DataLoader, 0 workers."""
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    dataset = datasets._unchecked(tvd.CIFAR10)(root, train=True, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=bs, shuffle=True, num_workers=0,
                                         drop_last=True)
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch


def _rate(batches, bs: int, steps: int, model: torch.nn.Module | None) -> float:
    """Images per second over ``steps`` batches (after one warm-up batch)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if model else None
    start = 0.0
    for i, (xb, yb) in enumerate(batches):
        if i == 1:
            start = time.perf_counter()
        if model is not None and opt is not None:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return bs * (steps - 1) / (time.perf_counter() - start)


def throughput(root: str, data: dict[str, np.ndarray], quick: bool) -> list[tuple[str, ...]]:
    torch.set_num_threads(1)
    bs, width = 128, (8 if quick else 16)
    train_steps, data_steps = (6, 20) if quick else (15, 60)
    x, y = shared_tensor(data["train_x"], torch.device("cpu")), shared_tensor(
        data["train_y"], torch.device("cpu"))
    rows = []
    for label, steps, with_model in (("data pipeline only (no model)", data_steps, False),
                                     (f"ResNet-18 width {width} train step", train_steps, True)):
        rates = [0.0, 0.0]
        makers = (lambda s: _tensor_batches(x, y, bs, s), lambda s: _loader_batches(root, bs, s))
        for _ in range(2):  # alternate and keep each path's best: the cores are shared
            for i, make in enumerate(makers):
                model = (build_model("resnet18", 10, in_shape=(3, 32, 32), width=width)
                         if with_model else None)
                rates[i] = max(rates[i], _rate(make(steps), bs, steps, model))
        ratio = rates[0] / rates[1]
        rows.append((label, f"{rates[0]:,.0f}", f"{rates[1]:,.0f}", f"{ratio:.2f}x",
                     "yes" if ratio >= 2 else "no"))
    return rows


def _uss() -> tuple[int, int]:
    import psutil

    info = psutil.Process().memory_full_info()
    return int(info.uss), int(info.rss)


class Holder:
    """A Ray actor that builds a real workload over the dataset and touches every byte."""

    def __init__(self) -> None:
        self.workload: Any = None

    def hold(self, refs: list[Any] | None, options: dict[str, Any]) -> dict[str, int]:
        import ray

        uss0, rss0 = _uss()
        data = ray.get(refs[0]) if refs else ResNet18CIFAR10.load_data(options)
        self.workload = ResNet18CIFAR10({}, data=data, options=options)
        touched = sum(int(t.sum()) for t in self.workload._x.values())  # reads every image byte
        uss1, rss1 = _uss()
        return {"uss": uss1 - uss0, "rss": rss1 - rss0, "touched": touched}


def memory(options: dict[str, Any], nbytes: int) -> list[tuple[str, ...]]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        actor_cls = ray.remote(num_cpus=1)(Holder)
        results = {}
        for mode in ("shared", "own copy"):
            actors = [actor_cls.remote() for _ in range(2)]
            ray.get([a.__ray_ready__.remote() for a in actors])
            ref = ray.put(ResNet18CIFAR10.load_data(options)) if mode == "shared" else None
            results[mode] = ray.get([a.hold.remote([ref] if ref else None, options)
                                     for a in actors])
            for a in actors:
                ray.kill(a)
            del ref
    finally:
        ray.shutdown()
    mb = 1 / 2**20
    rows = []
    for mode, res in results.items():
        uss = sum(r["uss"] for r in res)
        total = uss + (nbytes if mode == "shared" else 0)  # + the one object-store copy
        rows.append((mode, f"{nbytes * mb:,.0f}",
                     " / ".join(f"{r['uss'] * mb:,.0f}" for r in res),
                     " / ".join(f"{r['rss'] * mb:,.0f}" for r in res),
                     f"{total * mb:,.0f}", f"{total / nbytes:.2f}x",
                     "yes" if total / nbytes <= 1.2 else "no"))
    return rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and steps (~1 min)")
    args = parser.parse_args()
    n_train = 20_000 if args.quick else 50_000  # CIFAR-10 has 50,000 training images
    with tempfile.TemporaryDirectory() as root:
        synthetic.write_cifar10(root, n_train=n_train, n_test=10_000)
        options = {"data_dir": root, "download": False, "verify_checksums": False,
                   "val_size": 5000, "width": 4, "threads": 1}
        data = ResNet18CIFAR10.load_data(options)
        nbytes = sum(v.nbytes for v in data.values())
        print(f"# synthetic uint8 CIFAR-10-format data ({n_train:,} train images, real file "
              f"format, read by torchvision.datasets.CIFAR10); real CIFAR is not on this machine")
        print(f"# torch {torch.__version__}, 1 intra-op thread, batch 128, CPU, best of 2 runs, "
              f"{os.cpu_count()} cores (shared)\n")
        print(_table(("throughput, images/s", "shared tensor path", "DataLoader + PIL",
                      "ratio", ">= 2x"), throughput(root, data, args.quick)))
        print()
        del data
        print(_table(("2 Ray workers, data", "1 copy MB", "USS delta MB (w1 / w2)",
                      "RSS delta MB (w1 / w2)", "node total MB", "vs 1 copy", "<= 1.2x"),
                     memory(options, nbytes)))
        print("\n# node total = 1 object-store copy + both workers' private (USS) growth for "
              "'shared';\n# the sum of both workers' USS growth for 'own copy'.")


if __name__ == "__main__":
    main()
