"""Dataset loading through torchvision's real classes, on small files in the real on-disk formats.

The official MD5s cannot match synthetic files, so loads use ``verify_checksums=False``, which
turns off only torchvision's checksum comparison; the parsing code is torchvision's own. A
separate test shows the check is really on by default.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pbtune.errors import UserError
from pbtune.workloads import datasets, synthetic


def _load(name: str, root: Path, **kw) -> dict[str, np.ndarray]:
    kw = {"val_size": 10, "download": False, "verify_checksums": False, **kw}
    return datasets.create(name, root, **kw)


def _cifar10_files(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read back what was written, independently of torchvision: (N, 3072) rows and labels."""
    folder = root / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        xs.append(entry["data"])
        ys.extend(entry["labels"])
    return np.vstack(xs), np.asarray(ys)


def test_cifar10_real_loader_layout_split_and_labels(tmp_path: Path) -> None:
    synthetic.write_cifar10(tmp_path, n_train=50, n_test=12)
    data = _load("cifar10", tmp_path)
    assert data["train_x"].shape == (40, 3, 32, 32) and data["val_x"].shape == (10, 3, 32, 32)
    assert data["test_x"].shape == (12, 3, 32, 32)
    assert all(data[k].dtype == np.uint8 for k in ("train_x", "val_x", "test_x"))
    assert all(data[k].dtype == np.int64 for k in ("train_y", "val_y", "test_y"))
    assert all(v.flags.c_contiguous for v in data.values())  # ready for the object store

    rows, labels = _cifar10_files(tmp_path)
    images = rows.reshape(-1, 3, 32, 32)  # file rows are R, G, B planes of 32×32: NCHW
    perm = np.random.default_rng(0).permutation(50)  # split_seed 0
    val_idx, train_idx = np.sort(perm[:10]), np.sort(perm[10:])
    np.testing.assert_array_equal(data["train_x"], images[train_idx])
    np.testing.assert_array_equal(data["val_x"], images[val_idx])
    np.testing.assert_array_equal(data["train_y"], labels[train_idx])
    np.testing.assert_array_equal(data["val_y"], labels[val_idx])


def test_split_is_fixed_disjoint_and_subset_takes_first_training_images(tmp_path: Path) -> None:
    synthetic.write_cifar10(tmp_path, n_train=50, n_test=4)
    a, b = _load("cifar10", tmp_path), _load("cifar10", tmp_path)
    np.testing.assert_array_equal(a["val_x"], b["val_x"])
    other = _load("cifar10", tmp_path, split_seed=1)
    assert not np.array_equal(a["val_x"], other["val_x"])  # another seed, another split
    rows, _ = _cifar10_files(tmp_path)
    flat = {r.tobytes() for r in rows}
    train = {x.tobytes() for x in a["train_x"].reshape(40, -1)}
    val = {x.tobytes() for x in a["val_x"].reshape(10, -1)}
    assert not train & val and train | val == flat
    sub = _load("cifar10", tmp_path, subset=7)
    np.testing.assert_array_equal(sub["train_x"], a["train_x"][:7])
    np.testing.assert_array_equal(sub["val_x"], a["val_x"])  # validation unaffected


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    synthetic.write_cifar100(tmp_path, n_train=30, n_test=6)
    data = _load("cifar100", tmp_path)
    with open(tmp_path / "cifar-100-python" / "test", "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    np.testing.assert_array_equal(data["test_y"], entry["fine_labels"])
    np.testing.assert_array_equal(data["test_x"], entry["data"].reshape(-1, 3, 32, 32))
    assert data["train_x"].shape == (20, 3, 32, 32)
    assert datasets.get("cifar100").num_classes == 100


def test_fashion_mnist_gz_files_are_extracted_and_read_by_torchvision(tmp_path: Path) -> None:
    raw = synthetic.write_fashion_mnist(tmp_path, n_train=30, n_test=6, compressed=True)
    assert not (raw / "train-images-idx3-ubyte").exists()
    data = _load("fashion_mnist", tmp_path)
    assert (raw / "train-images-idx3-ubyte").is_file()  # extracted for torchvision
    assert data["train_x"].shape == (20, 28, 28) and data["test_x"].dtype == np.uint8
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "rb") as fh:
        expected = np.frombuffer(fh.read()[16:], dtype=np.uint8).reshape(6, 28, 28)
    np.testing.assert_array_equal(data["test_x"], expected)
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "rb") as fh:
        np.testing.assert_array_equal(data["test_y"], np.frombuffer(fh.read()[8:], np.uint8))


def test_cifar_archive_placed_by_hand_is_extracted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    synthetic.write_cifar10(src, n_train=20, n_test=4)
    root = tmp_path / "data"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = _load("cifar10", root, val_size=4)
    assert data["train_x"].shape == (16, 3, 32, 32)


@pytest.mark.parametrize(("name", "needle"), [
    ("cifar10", "place cifar-10-python.tar.gz (or its extracted folder cifar-10-batches-py/) in"),
    ("cifar100", "place cifar-100-python.tar.gz (or its extracted folder cifar-100-python/) in"),
    ("fashion_mnist", "place train-images-idx3-ubyte.gz in"),
])
def test_missing_files_name_the_file_and_absolute_directory(
    tmp_path: Path, name: str, needle: str
) -> None:
    with pytest.raises(UserError) as info:
        _load(name, tmp_path / "nowhere")
    message = str(info.value)
    assert needle in message and str((tmp_path / "nowhere").resolve()) in message
    assert "\n" not in message


def test_incomplete_cifar_names_the_missing_batch(tmp_path: Path) -> None:
    folder = synthetic.write_cifar10(tmp_path, n_train=20, n_test=4)
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match=r"data_batch_3 missing from .*cifar-10-batches-py"):
        _load("cifar10", tmp_path)


def test_checksums_are_verified_by_default(tmp_path: Path) -> None:
    synthetic.write_cifar10(tmp_path, n_train=20, n_test=4)
    with pytest.raises(UserError, match=r"MD5 check.*verify_checksums: false"):
        _load("cifar10", tmp_path, verify_checksums=True)
    synthetic.write_fashion_mnist(tmp_path, n_train=20, n_test=4)
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz fails the FashionMNIST MD5"):
        _load("fashion_mnist", tmp_path, verify_checksums=True)


def test_registry_lists_and_rejects_unknown_names(tmp_path: Path) -> None:
    assert {"cifar10", "cifar100", "fashion_mnist"} <= set(datasets.list_datasets())
    with pytest.raises(UserError, match="unknown dataset 'imagenet'; valid: cifar10, cifar100"):
        datasets.create("imagenet", tmp_path)
    with pytest.raises(UserError, match="val_size must be in"):
        synthetic.write_cifar10(tmp_path, n_train=10, n_test=2)
        _load("cifar10", tmp_path, val_size=10)
