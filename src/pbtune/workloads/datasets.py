"""Dataset registry and loaders: decode once into uint8 numpy arrays for the shared data path.

Why: an engine calls a workload's ``load_data`` once per node and puts the result in Ray's object
store, where every worker maps it zero-copy. That only works if the result is a handful of plain
numpy arrays, decoded up front: uint8 images (CIFAR: ``(N, 3, 32, 32)``; FashionMNIST:
``(N, 28, 28)``) and int64 labels, never PIL images or a ``Dataset`` object. Storing uint8 (not
float32) keeps CIFAR-10 at 150 MB instead of 600 MB; conversion happens per minibatch on the device.

Files are read by torchvision's own dataset classes (``CIFAR10``, ``CIFAR100``, ``FashionMNIST``,
``MNIST``) from ``data_dir``, downloading when allowed. Anything missing ends in a one-line
:class:`~pbtune.errors.UserError` naming the file to place and the absolute directory.

The validation split is carved from the training set with a fixed ``split_seed`` (independent of
trial seeds), so every trial, run and replay ranks on the same images; the test set is returned
separately and is never used for PBT decisions.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchvision import datasets as tvd
from torchvision.datasets.utils import check_md5, extract_archive

from pbtune.errors import UserError

__all__ = ["DatasetSpec", "create", "get", "list_datasets", "register", "split_train_val"]

Arrays = dict[str, np.ndarray]
#: (root, download, verify_checksums) → (train_x, train_y, test_x, test_y)
Loader = Callable[[Path, bool, bool], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DatasetSpec:
    """What a workload needs to know about a dataset besides its arrays."""

    name: str  # registry key, e.g. "cifar10"
    title: str  # for messages, e.g. "CIFAR-10"
    loader: Loader
    image_shape: tuple[int, int, int]  # (C, H, W) of one image as the model sees it
    num_classes: int
    mean: tuple[float, ...]  # per-channel, on the 0..1 scale
    std: tuple[float, ...]


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Record ``spec`` under ``spec.name`` (re-registering the same name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec registered as ``name``; an unknown name lists the valid ones."""
    if name not in _REGISTRY:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(list_datasets())}")
    return _REGISTRY[name]


def split_train_val(
    x: np.ndarray, y: np.ndarray, val_size: int, split_seed: int, subset: int | None = None
) -> Arrays:
    """Carve ``val_size`` random images (fixed by ``split_seed``) out of the training set.

    Both parts keep the original file order. ``subset`` keeps only the first N remaining training
    images (tests, benchmarks); the validation part is unaffected.
    """
    n = len(x)
    if not 0 < val_size < n:
        raise UserError(f"val_size must be in [1, {n - 1}] for {n} training images, got {val_size}")
    perm = np.random.default_rng(split_seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
    if subset is not None:
        if int(subset) < 1:
            raise UserError(f"subset must be >= 1 or null, got {subset}")
        train_idx = train_idx[: int(subset)]
    return {  # fancy indexing copies: each array is contiguous and owns its memory
        "train_x": x[train_idx], "train_y": y[train_idx].astype(np.int64),
        "val_x": x[val_idx], "val_y": y[val_idx].astype(np.int64),
    }


def create(
    name: str,
    data_dir: str | Path = "./data",
    *,
    val_size: int = 5000,
    split_seed: int = 0,
    subset: int | None = None,
    download: bool = True,
    verify_checksums: bool = True,
) -> Arrays:
    """Load dataset ``name`` as ``train_x/train_y/val_x/val_y/test_x/test_y`` numpy arrays."""
    spec = get(name)
    root = Path(data_dir).expanduser().resolve()
    train_x, train_y, test_x, test_y = spec.loader(root, bool(download), bool(verify_checksums))
    arrays = split_train_val(train_x, train_y, int(val_size), int(split_seed), subset)
    arrays["test_x"] = np.ascontiguousarray(test_x)
    arrays["test_y"] = np.ascontiguousarray(test_y, dtype=np.int64)
    return arrays


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:160]


def _unchecked(cls: type) -> type:
    """The torchvision class with MD5 checks off (file existence only); its parsing is unchanged.

    Why: ``verify_checksums: false`` accepts files that are not the official release (synthetic
    test data, re-packed copies); torchvision's ``check_integrity(path, None)`` tests existence.
    """
    return type(f"Unchecked{cls.__name__}", (cls,), {
        "train_list": [[f, None] for f, _ in cls.train_list],
        "test_list": [[f, None] for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


def _cifar_loader(cls: type, title: str) -> Loader:
    archive, folder = cls.filename, cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]

    def load(root: Path, download: bool, verify: bool) -> tuple[np.ndarray, ...]:
        if (root / archive).is_file() and not (root / folder).is_dir():
            extract_archive(str(root / archive), str(root))  # placed by hand, not yet extracted
        missing = [f for f in files if not (root / folder / f).is_file()]
        failure = ""
        if missing and download:
            try:  # torchvision checks the archive's MD5 itself
                cls(str(root), train=True, download=True)
            except Exception as exc:  # no network, proxy, disk full: all end the same way
                failure = f" (download failed: {_reason(exc)})"
            missing = [f for f in files if not (root / folder / f).is_file()]
        if missing:
            where = (f"{title} incomplete: {missing[0]} missing from {root / folder}"
                     if (root / folder).is_dir() else f"{title} not found")
            raise UserError(f"{where}: place {archive} (or its extracted folder {folder}/) "
                            f"in {root}{failure}")
        reader = cls if verify else _unchecked(cls)
        try:
            train, test = reader(str(root), train=True), reader(str(root), train=False)
        except RuntimeError:
            raise UserError(
                f"{title} files in {root / folder} fail torchvision's MD5 check (corrupt or not "
                f"the official release): replace them from {archive}, or set options "
                "verify_checksums: false to accept them") from None
        except Exception as exc:
            raise UserError(f"cannot read {title} from {root / folder}: {_reason(exc)}") from None
        # torchvision keeps the file's (N, 3, 32, 32) buffer and exposes an HWC view of it:
        # transposing back is free and gives the contiguous NCHW layout the models consume.
        return (train.data.transpose(0, 3, 1, 2), np.asarray(train.targets, dtype=np.int64),
                test.data.transpose(0, 3, 1, 2), np.asarray(test.targets, dtype=np.int64))

    return load


def _idx_loader(cls: type, title: str) -> Loader:
    """FashionMNIST / MNIST: torchvision's class reading ``<root>/<Class>/raw/*-ubyte[.gz]``."""

    def load(root: Path, download: bool, verify: bool) -> tuple[np.ndarray, ...]:
        raw = root / cls.__name__ / "raw"
        for filename, md5 in cls.resources:  # .gz placed by hand: extract what torchvision reads
            gz, plain = raw / filename, raw / filename.removesuffix(".gz")
            if gz.is_file() and not plain.is_file():
                if verify and not check_md5(str(gz), md5):
                    raise UserError(f"{gz} fails the {title} MD5 check (corrupt or not the "
                                    "official file): replace it, or set options "
                                    "verify_checksums: false to accept it")
                with gzip.open(gz, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        names = [f for f, _ in cls.resources]
        missing = [f for f in names if not (raw / f.removesuffix(".gz")).is_file()]
        failure = ""
        if missing and download:
            try:
                cls(str(root), train=True, download=True)
            except Exception as exc:
                failure = f" (download failed: {_reason(exc)})"
            missing = [f for f in names if not (raw / f.removesuffix(".gz")).is_file()]
        if missing:
            raise UserError(f"{title} not found: place {missing[0]} in {raw} "
                            f"(all of {', '.join(names)}){failure}")
        try:
            train, test = cls(str(root), train=True), cls(str(root), train=False)
        except Exception as exc:
            raise UserError(f"cannot read {title} from {raw}: {_reason(exc)}") from None
        return (train.data.numpy(), train.targets.numpy().astype(np.int64),
                test.data.numpy(), test.targets.numpy().astype(np.int64))

    return load


register(DatasetSpec("cifar10", "CIFAR-10", _cifar_loader(tvd.CIFAR10, "CIFAR-10"), (3, 32, 32),
                     10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
register(DatasetSpec("cifar100", "CIFAR-100", _cifar_loader(tvd.CIFAR100, "CIFAR-100"),
                     (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)))
register(DatasetSpec("fashion_mnist", "FashionMNIST", _idx_loader(tvd.FashionMNIST, "FashionMNIST"),
                     (1, 28, 28), 10, (0.2860,), (0.3530,)))
register(DatasetSpec("mnist", "MNIST", _idx_loader(tvd.MNIST, "MNIST"), (1, 28, 28), 10,
                     (0.1307,), (0.3081,)))
