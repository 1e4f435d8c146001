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


def layout(state: Any) -> Any:
    """The shapes and dtypes of ``state``'s arrays and tensors, in its tree (other leaves:
    ``None``): what :func:`blank` needs to make memory a later :func:`fill` writes into. Reads
    no values, so it is cheap and safe on a state that lives on a GPU."""
    if _torch_tensor(state):
        return ("torch", tuple(state.shape), state.dtype)
    if type(state) is np.ndarray:  # subclasses are copied afresh by fill: nothing to lay out
        return ("numpy", state.shape, state.dtype)
    if isinstance(state, dict):
        kind = OrderedDict if isinstance(state, OrderedDict) else dict
        return kind((k, layout(v)) for k, v in state.items())
    if isinstance(state, list):
        return [layout(v) for v in state]
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
        return ("tuple", tuple(layout(v) for v in state))
    return None


def blank(shape: Any) -> Any:
    """Memory laid out as :func:`layout` described, every page written (zeros): a :func:`fill`
    into it copies at memory speed instead of faulting each page in."""
    if isinstance(shape, dict):
        return type(shape)((k, blank(v)) for k, v in shape.items())
    if isinstance(shape, list):
        return [blank(v) for v in shape]
    if isinstance(shape, tuple) and shape and shape[0] == "tuple":
        return tuple(blank(v) for v in shape[1])
    if isinstance(shape, tuple) and shape and shape[0] == "torch":
        import torch

        return torch.empty(shape[1], dtype=shape[2], device="cpu").zero_()
    if isinstance(shape, tuple) and shape and shape[0] == "numpy":
        out = np.empty(shape[1], dtype=shape[2])
        out.fill(0)  # np.zeros maps pages untouched: the first fill would fault them in
        return out
    return None


def state_nbytes(state: Any) -> int:
    """Bytes of the arrays and tensors in a state (what copying it moves); other leaves 0."""
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    if isinstance(state, (bytes, bytearray)):
        return len(state)
    nbytes = getattr(state, "nbytes", None)  # numpy arrays and torch tensors
    return int(nbytes) if isinstance(nbytes, int) else 0
