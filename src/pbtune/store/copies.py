"""Copies of trial states, optionally written into the memory of an earlier copy.

Why: a state of gigabytes copied into fresh memory costs far more than the copy itself — every
page is faulted in (on a VM whose freed memory goes back to the host, ~0.35 GB/s measured against
~15 GB/s for a copy into memory already touched). A worker that copies its states often (best
candidates, checkpoints, exploit donors) reuses the arrays of a copy nobody holds any more:
:func:`fill` writes the new state into them wherever shape and dtype match.

Works on numpy arrays and torch tensors (torch is not imported here: a tensor can only exist
when torch already is), in dicts (``OrderedDict`` kept), lists and tuples; other leaves are
deep-copied. Tensors always land on the CPU, as :meth:`Workload.get_state` promises.
"""

from __future__ import annotations

import copy
import sys
from collections import OrderedDict
from typing import Any

import numpy as np


def _torch_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _fill_tensor(old: Any, new: Any) -> Any:
    new = new.detach()
    if (_torch_tensor(old) and old.device.type == "cpu" and old.shape == new.shape
            and old.dtype == new.dtype and old.layout == new.layout and not old.is_sparse
            and old.is_contiguous() and not old.requires_grad):
        return old.copy_(new)
    return new.to("cpu", copy=True)


def _fill_array(old: Any, new: np.ndarray) -> np.ndarray:
    if (isinstance(old, np.ndarray) and type(old) is type(new) and old.shape == new.shape
            and old.dtype == new.dtype and old.flags.writeable and old.base is None):
        np.copyto(old, new)
        return old
    return np.array(new, copy=True, subok=True)


def fill(old: Any, new: Any) -> Any:
    """A deep copy of ``new`` that reuses ``old``'s arrays, tensors and containers where they
    fit (same place in the tree, same shape and dtype); ``old=None`` makes a plain copy.

    ``old`` is changed: call it only on a copy nobody else reads any more.
    """
    if _torch_tensor(new):
        return _fill_tensor(old, new)
    if isinstance(new, np.ndarray):
        return _fill_array(old, new)
    if isinstance(new, dict):  # OrderedDict kept, other mappings copied as dicts
        kind = OrderedDict if isinstance(new, OrderedDict) else dict
        if type(old) is kind and list(old) == list(new):  # same keys, same order: in place
            for key, value in new.items():
                old[key] = fill(old[key], value)
            return old
        previous = old if isinstance(old, dict) else {}
        return kind((k, fill(previous.get(k), v)) for k, v in new.items())
    if isinstance(new, list):
        if isinstance(old, list) and len(old) == len(new):
            old[:] = [fill(o, n) for o, n in zip(old, new, strict=True)]
            return old
        return [fill(None, v) for v in new]
    if isinstance(new, tuple):
        parts = old if isinstance(old, tuple) and len(old) == len(new) else (None,) * len(new)
        items = [fill(o, n) for o, n in zip(parts, new, strict=True)]
        return type(new)(*items) if hasattr(new, "_fields") else tuple(items)
    return copy.deepcopy(new)


def copy_state(state: Any) -> Any:
    """A deep copy of ``state`` with every tensor detached and on the CPU (never aliased)."""
    return fill(None, state)
