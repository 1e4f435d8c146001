"""Contract-test options for the vision workloads: tiny real-format data files, tiny nets.

Each factory writes a few dozen synthetic images in the exact on-disk format torchvision reads
(CIFAR pickles, gzip'd IDX) into ``tmp_path`` and returns options for a narrow net, two steps per
iteration and one thread, so the real loaders run and a whole contract case takes well under a
second. ``verify_checksums: false`` is required: synthetic files cannot match the official MD5s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbtune.workloads import synthetic

_COMMON: dict[str, Any] = {
    "download": False,  # tests never touch the network
    "verify_checksums": False,
    "val_size": 8,  # images
    "steps_per_iteration": 2,
    "eval_batch_size": 16,
    "threads": 1,  # 2 shared cores: more threads only spin
}


def cifar10_options(tmp_path: Path) -> dict[str, Any]:
    synthetic.write_cifar10(tmp_path, n_train=40, n_test=8)
    return {**_COMMON, "data_dir": str(tmp_path), "width": 4}


def cifar100_options(tmp_path: Path) -> dict[str, Any]:
    synthetic.write_cifar100(tmp_path, n_train=40, n_test=8)
    return {**_COMMON, "data_dir": str(tmp_path), "width": 4}


def fashion_mnist_options(tmp_path: Path) -> dict[str, Any]:
    synthetic.write_fashion_mnist(tmp_path, n_train=40, n_test=8)
    return {**_COMMON, "data_dir": str(tmp_path), "width": 16}


OPTIONS_FACTORIES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "resnet18-cifar10": cifar10_options,
    "resnet50-cifar100": cifar100_options,
    "mlp-fashionmnist": fashion_mnist_options,
}
