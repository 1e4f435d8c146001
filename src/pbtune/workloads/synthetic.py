"""Write small synthetic datasets in the exact on-disk formats torchvision reads.

Why: tests, benchmarks and offline smoke runs need CIFAR-10/100 and FashionMNIST files without a
network. Writing them in the *real* format (CIFAR python pickles, gzip'd IDX files) means the
real loading code runs on them: torchvision's dataset classes parse them, and only the MD5 check
of the official release (which no synthetic file can pass) is skipped, through the explicit
``verify_checksums: false`` option of the vision workloads.

Formats (as published by the dataset authors and parsed by ``torchvision.datasets``):

* CIFAR-10 ``cifar-10-batches-py/``: ``data_batch_1..5`` and ``test_batch`` are pickles of
  ``{"data": uint8 (N, 3072) row-major R,G,B planes, "labels": [int], "batch_label", "filenames"}``;
  ``batches.meta`` holds ``label_names``.
* CIFAR-100 ``cifar-100-python/``: ``train`` and ``test`` with ``fine_labels``/``coarse_labels``;
  ``meta`` holds ``fine_label_names``/``coarse_label_names``.
* FashionMNIST ``FashionMNIST/raw/``: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``,
  big-endian IDX (magic 0x0803 images with dims N, 28, 28; 0x0801 labels with dim N).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

__all__ = ["write_cifar10", "write_cifar100", "write_fashion_mnist", "write_synthetic"]


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...], labels: np.ndarray,
            num_classes: int) -> np.ndarray:
    """uint8 images whose mean brightness depends on the label, so a net can learn something."""
    base = ((labels.astype(np.int16) * 2 + 1) * 100 // num_classes).astype(np.int16)
    noise = rng.integers(-40, 41, size=(n, *shape), dtype=np.int16)  # int16: cheap at 50,000 images
    return np.clip(base.reshape(-1, *[1] * len(shape)) + noise, 0, 255).astype(np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)  # the official files are Python-2 pickles


def write_cifar10(root: str | Path, n_train: int = 50, n_test: int = 10, seed: int = 0) -> Path:
    """Write ``cifar-10-batches-py/`` under ``root`` (``n_train`` split over 5 batches)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, 10, size=n_train + n_test)
    data = _images(rng, n_train + n_test, (3072,), labels, 10)
    bounds = np.linspace(0, n_train, 6).astype(int)
    for i in range(5):
        sl = slice(bounds[i], bounds[i + 1])
        _dump(folder / f"data_batch_{i + 1}", {
            "batch_label": f"training batch {i + 1} of 5", "labels": labels[sl].tolist(),
            "data": data[sl], "filenames": [f"img_{j}.png" for j in range(sl.start, sl.stop)],
        })
    _dump(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1", "labels": labels[n_train:].tolist(),
        "data": data[n_train:], "filenames": [f"test_{j}.png" for j in range(n_test)],
    })
    _dump(folder / "batches.meta", {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                        "ship", "truck"],
        "num_cases_per_batch": int(bounds[1]), "num_vis": 3072,
    })
    return folder


def write_cifar100(root: str | Path, n_train: int = 100, n_test: int = 20, seed: int = 0) -> Path:
    """Write ``cifar-100-python/`` (``train``, ``test``, ``meta``) under ``root``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    fine = rng.integers(0, 100, size=n_train + n_test)
    data = _images(rng, n_train + n_test, (3072,), fine, 100)
    for name, sl in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        _dump(folder / name, {
            "filenames": [f"{name}_{j}.png" for j in range(len(fine[sl]))],
            "batch_label": f"{name}ing batch 1 of 1", "fine_labels": fine[sl].tolist(),
            "coarse_labels": (fine[sl] // 5).tolist(), "data": data[sl],
        })
    _dump(folder / "meta", {
        "fine_label_names": [f"class_{i}" for i in range(100)],
        "coarse_label_names": [f"superclass_{i}" for i in range(20)],
    })
    return folder


def _idx(array: np.ndarray) -> bytes:
    """IDX encoding: 0x00 0x00, type 0x08 (ubyte), ndim, big-endian int32 dims, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fashion_mnist(
    root: str | Path, n_train: int = 60, n_test: int = 20, seed: int = 0, *,
    compressed: bool = True, folder_name: str = "FashionMNIST",
) -> Path:
    """Write ``FashionMNIST/raw/`` IDX files, gzip'd as downloaded (``compressed``) or extracted
    (``folder_name="MNIST"``: the same format and names in MNIST's folder)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / folder_name / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, 10, size=n_train + n_test).astype(np.uint8)
    images = _images(rng, n_train + n_test, (28, 28), labels, 10)
    files = {
        "train-images-idx3-ubyte": images[:n_train], "train-labels-idx1-ubyte": labels[:n_train],
        "t10k-images-idx3-ubyte": images[n_train:], "t10k-labels-idx1-ubyte": labels[n_train:],
    }
    for name, array in files.items():
        if compressed:
            with gzip.open(folder / f"{name}.gz", "wb") as fh:
                fh.write(_idx(array))
        else:
            (folder / name).write_bytes(_idx(array))
    return folder


def write_mnist(root: str | Path, n_train: int = 60, n_test: int = 20, seed: int = 0, *,
                compressed: bool = True) -> Path:
    """Write ``MNIST/raw/`` IDX files (the format and file names FashionMNIST uses)."""
    return write_fashion_mnist(root, n_train, n_test, seed, compressed=compressed,
                               folder_name="MNIST")


def write_synthetic(name: str, root: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write dataset ``name`` (``cifar10``, ``cifar100``, ``fashion_mnist``, ``mnist``)."""
    writers = {"cifar10": write_cifar10, "cifar100": write_cifar100,
               "fashion_mnist": write_fashion_mnist, "mnist": write_mnist}
    if name not in writers:
        raise ValueError(f"no synthetic writer for {name!r}; valid: {sorted(writers)}")
    return writers[name](root, n_train, n_test, seed)
