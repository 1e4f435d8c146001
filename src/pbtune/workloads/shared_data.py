"""Tensors over node-shared arrays: zero-copy on CPU, one cached device copy per worker process.

Why: an engine hands every trial on a node the same read-only numpy arrays (views into Ray's
object store). On CPU a trial must index minibatches straight out of them; copying the training
set per trial would multiply memory by the number of trials. On CUDA the uint8 data is uploaded
once per worker process and every trial that worker runs reuses that device copy (CIFAR-10 is
150 MB as uint8), so switching trials costs no transfer.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["clear_device_cache", "shared_tensor"]

# One device copy of each shared memory region per worker process, keyed by what the array
# *shows* (data address, shape, strides, dtype) and the device: two views of the same memory (a
# trial's ``subset`` slice, made anew per trial) share one copy. The array is kept alive with its
# tensor so its memory cannot be reused by another array under the same key.
_DEVICE_CACHE: dict[tuple[Any, ...], tuple[np.ndarray, torch.Tensor]] = {}
_DEVICE_CACHE_MAX = 12  # entries (two runs' worth of six arrays)


def shared_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor over ``array`` without copying it on CPU; one cached copy per device otherwise.

    Arrays from Ray's object store are read-only; ``torch.from_numpy`` warns about that because
    writes would be undefined. Nothing here writes to them (augmentation gathers into new
    tensors), so that one warning is silenced locally.
    """
    if device.type == "cpu":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
            return torch.from_numpy(array)
    key = (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str,
           str(device))
    hit = _DEVICE_CACHE.get(key)
    if hit is not None:
        return hit[1]
    host = shared_tensor(array, torch.device("cpu"))
    # A plain (synchronous) copy, once per worker: pinning first would leave a pinned staging
    # buffer of the array's size in torch's host cache for the life of the process.
    tensor = host.to(device)
    while len(_DEVICE_CACHE) >= _DEVICE_CACHE_MAX:
        _DEVICE_CACHE.pop(next(iter(_DEVICE_CACHE)))
    _DEVICE_CACHE[key] = (array, tensor)
    return tensor


def clear_device_cache() -> None:
    """Forget every cached device copy (frees device memory once no trial uses it)."""
    _DEVICE_CACHE.clear()


def tensors_of(name: str, data: Any, keys: Sequence[str], device: Any) -> list[Any]:
    """``data[k]`` for each of ``keys`` as tensors over the shared arrays: zero-copy on CPU,
    one cached copy per device. A missing key or ragged lengths: a one-line UserError."""
    from pbtune.errors import UserError

    if not isinstance(data, Mapping) or any(k not in data for k in keys):
        have = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise UserError(f"{name}: load_data must return a dict with {list(keys)}; got "
                        f"{have} (or set train_arrays / eval_arrays to its keys)")
    out = [shared_tensor(data[k], device) if isinstance(data[k], np.ndarray)
           else torch.as_tensor(data[k]).to(device) for k in keys]
    if len({t.shape[0] for t in out}) != 1 or out[0].shape[0] == 0:
        raise UserError(f"{name}: {list(keys)} must be non-empty and of equal length, "
                        f"got {[tuple(t.shape) for t in out]}")
    return out


def image_splits(name: str, data: Mapping[str, Any], image_shape: tuple[int, ...],
                 subset: int | None, device: Any,
                 splits: Sequence[str] = ("train", "val", "test"),
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """An image dataset's ``{split}_x`` (uint8) and ``{split}_y`` (int64) arrays as views (CPU)
    or cached device copies, images shaped ``image_shape``; ``subset``: the first N training
    images only. Missing arrays, other dtypes or shapes: a one-line UserError."""
    from pbtune.errors import UserError

    missing = [f"{s}_{k}" for s in splits for k in "xy" if f"{s}_{k}" not in data]
    if missing:
        raise UserError(f"{name}: data is missing {missing}; pass what load_data returns")
    xs, ys = {}, {}
    for split in splits:
        x, y = data[f"{split}_x"], data[f"{split}_y"]
        if x.dtype != np.uint8 or y.dtype != np.int64 or len(x) != len(y):
            raise UserError(f"{name}: {split} data must be uint8 images and int64 labels "
                            f"of equal length, got {x.dtype}{x.shape} / {y.dtype}{y.shape}")
        if split == "train" and subset is not None:
            x, y = x[: int(subset)], y[: int(subset)]  # views
        if tuple(x.shape[1:]) not in (image_shape, image_shape[1:]):
            raise UserError(f"{name}: {split}_x has images of shape {x.shape[1:]}, "
                            f"expected {image_shape}")
        xs[split] = shared_tensor(x, device).view(-1, *image_shape)
        ys[split] = shared_tensor(y, device)
    return xs, ys
