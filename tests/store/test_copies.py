"""fill / copy_state: deep copies of states that reuse an earlier copy's arrays."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pbtune.store.copies import blank, copy_state, fill, layout, state_nbytes
from pbtune.workloads._torch_utils import state_to_cpu

Pair = namedtuple("Pair", "a b")


def same(a, b) -> bool:
    """Equal structure, types, dtypes and values (tensors and arrays compared by value)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def state(scale: float = 1.0) -> dict:
    return {"model": OrderedDict(w=torch.full((3, 4), scale), b=torch.zeros(4, dtype=torch.half)),
            "blob": np.full(10, scale, dtype=np.float32), "step": 3, "name": "x",
            "groups": [{"lr": 0.1 * scale, "params": [0, 1]}], "pair": Pair(torch.ones(2), 5)}


def test_a_copy_is_equal_and_never_aliased():
    live = state()
    out = copy_state(live)
    assert same(out, live)
    live["model"]["w"] += 1
    live["blob"][:] = 7
    live["groups"][0]["params"].append(2)
    assert float(out["model"]["w"][0, 0]) == 1.0 and out["blob"][0] == 1.0
    assert out["groups"][0]["params"] == [0, 1]
    assert type(out["model"]) is OrderedDict and type(out["pair"]) is Pair


def test_filling_an_old_copy_reuses_its_arrays():
    old = copy_state(state(1.0))
    w, blob = old["model"]["w"], old["blob"]
    new = fill(old, state(2.0))
    assert new is old and new["model"]["w"] is w and new["blob"] is blob  # same memory
    assert same(new, state(2.0))


def test_what_does_not_fit_is_copied_fresh():
    old = copy_state(state(1.0))
    w = old["model"]["w"]
    live = state(2.0)
    live["model"]["w"] = torch.ones(5)  # another shape
    live["blob"] = live["blob"].astype(np.float64)  # another dtype
    live["extra"] = torch.arange(3)  # another key: a new dict, leaves still reused
    new = fill(old, live)
    assert same(new, live) and new["model"]["w"] is not w
    assert new["pair"][0] is old["pair"][0]


def test_tensors_are_detached_and_land_on_the_cpu():
    p = torch.nn.Parameter(torch.ones(3))
    out = copy_state({"p": p})
    assert not out["p"].requires_grad and out["p"].device.type == "cpu"
    assert copy_state({"p": p})["p"] is not p


def test_state_to_cpu_is_copy_state():
    assert same(state_to_cpu(state()), copy_state(state()))


arrays = hnp.arrays(st.sampled_from([np.float32, np.int64]), hnp.array_shapes(max_dims=2,
                                                                               max_side=4))
trees = st.recursive(st.one_of(arrays, st.integers(), st.text(max_size=3)),
                     lambda kids: st.one_of(st.lists(kids, max_size=3),
                                            st.dictionaries(st.text(max_size=2), kids,
                                                            max_size=3)),
                     max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(trees, trees)
def test_fill_any_old_copy_with_any_state_gives_that_state(a, b):
    """Whatever the old copy was, filling it gives a deep copy of the new state."""
    old = copy_state(a)
    out = fill(old, b)
    assert same(out, b)
    for x in _arrays(b):  # no array of b is shared with the result
        assert not any(np.shares_memory(x, y) for y in _arrays(out))


def _arrays(tree):
    if isinstance(tree, np.ndarray):
        return [tree]
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _arrays(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in _arrays(v)]
    return []


def _leaves(tree):
    if isinstance(tree, (torch.Tensor, np.ndarray)):
        return [tree]
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in _leaves(v)]
    return []


def test_a_blank_of_a_states_layout_is_filled_in_place():
    """Prewarmed memory (blank(layout(state))) takes every array and tensor of a later state
    in place, plain tuples included; namedtuples and other leaves are copied afresh."""
    live = state(3.0)
    live["t"] = (torch.ones(2), np.arange(3))
    empty = blank(layout(live))
    arrays = [id(x) for x in _leaves(empty)]
    assert all(float(x.sum()) == 0 for x in _leaves(empty))  # written, not just mapped
    out = fill(empty, live)
    assert same(out, live)
    reused = [id(x) for x in _leaves(out) if id(x) in arrays]
    assert len(reused) == len(_leaves(live)) - 1  # all but the namedtuple's tensor
    size = [x.nbytes if isinstance(x, np.ndarray) else x.element_size() * x.nelement()
            for x in _leaves(live)]
    pair = live["pair"][0]  # a namedtuple: not laid out
    nbytes = sum(size) - pair.element_size() * pair.nelement()
    assert state_nbytes(blank(layout(live))) == nbytes  # what blank allocates, exactly


@settings(max_examples=100, deadline=None)
@given(trees)
def test_fill_into_a_blank_of_any_layout_gives_that_state(a):
    out = fill(blank(layout(a)), a)
    assert same(out, a)
    assert state_nbytes(blank(layout(a))) == sum(x.nbytes for x in _arrays(a))
