"""Contract-test options for the DCGAN workloads: tiny nets, two steps per iteration, a small
classifier recipe cached for the whole session (MNIST: synthetic idx files in the real format)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbtune.workloads import synthetic

TINY: dict[str, Any] = {
    "nz": 8, "ngf": 4, "ndf": 4, "steps_per_iteration": 2, "batch_size": 16,
    "eval_samples": 32, "eval_splits": 4, "grid": 16, "threads": 1,
    "classifier_epochs": 3, "min_classifier_accuracy": 0.0,  # the score's quality: test_gan.py
}


def _cache(tmp_path: Path) -> str:
    return str(tmp_path.parent / "classifier-cache")  # shared by every case of the session


def dcgan_digits_options(tmp_path: Path) -> dict[str, Any]:
    return {**TINY, "cache_dir": _cache(tmp_path)}


def dcgan_mnist_options(tmp_path: Path) -> dict[str, Any]:
    synthetic.write_mnist(tmp_path, n_train=120, n_test=40)
    return {**TINY, "cache_dir": _cache(tmp_path), "data_dir": str(tmp_path), "download": False,
            "verify_checksums": False, "val_size": 40}


OPTIONS_FACTORIES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "dcgan-digits": dcgan_digits_options,
    "dcgan-mnist": dcgan_mnist_options,
}
