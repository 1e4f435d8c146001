"""load_optimizer_state: an exploit's donor optimiser state, loaded into the target's own
tensors when it has state of the same layout, else through ``load_state_dict`` on a copy —
the same result either way, and never an alias of the state it was given."""

from __future__ import annotations

import copy

import pytest
import torch

from pbtune.workloads._torch_utils import load_optimizer_state

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "two_groups": lambda p: torch.optim.AdamW([{"params": p[:1], "lr": 0.02},
                                               {"params": p[1:], "weight_decay": 0.0}],
                                              lr=0.01),
}


def trained(make, seed: int, steps: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = make(list(model.parameters()))
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        opt.step()
    return model, opt


def tensors(state):
    return [(k, n, v) for k, s in sorted(state["state"].items()) for n, v in sorted(s.items())]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_in_place_equals_load_state_dict_and_reuses_memory(name):
    make = OPTIMIZERS[name]
    _donor_model, donor = trained(make, seed=0, steps=3)
    donor_state = copy.deepcopy(donor.state_dict())
    snapshot = copy.deepcopy(donor_state)
    _m1, target = trained(make, seed=1, steps=2)  # has state: loaded in place
    before = {id(t): t.data_ptr() for s in target.state.values() for t in s.values()
              if isinstance(t, torch.Tensor)}
    _m2, reference = trained(make, seed=1, steps=2)
    load_optimizer_state(target, donor_state)
    reference.load_state_dict(copy.deepcopy(donor_state))
    got, want = target.state_dict(), reference.state_dict()
    assert got["param_groups"] == want["param_groups"]
    for (k1, n1, a), (k2, n2, b) in zip(tensors(got), tensors(want), strict=True):
        assert (k1, n1) == (k2, n2) and torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    after = {id(t): t.data_ptr() for s in target.state.values() for t in s.values()
             if isinstance(t, torch.Tensor)}
    assert after == before  # the same tensors, written into
    # Training on changes nothing in the state it was given.
    target.zero_grad()
    for p in _m1.parameters():
        p.grad = torch.ones_like(p)
    target.step()
    for (_k, _n, a), (_k2, _n2, b) in zip(tensors(donor_state), tensors(snapshot), strict=True):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_an_optimiser_without_state_loads_a_copy():
    _m, donor = trained(OPTIMIZERS["adam"], seed=0, steps=2)
    state = donor.state_dict()
    _m2, fresh = trained(OPTIMIZERS["adam"], seed=1, steps=0)
    load_optimizer_state(fresh, state)
    loaded = fresh.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(loaded, state["state"][0]["exp_avg"])
    assert loaded.data_ptr() != state["state"][0]["exp_avg"].data_ptr()  # not aliased


def test_another_layout_falls_back_to_load_state_dict():
    """A donor optimiser of other shapes is never half-written: torch's own checks run."""
    _m, donor = trained(OPTIMIZERS["adam"], seed=0, steps=2)
    _m2, target = trained(OPTIMIZERS["sgd"], seed=1, steps=2)  # other keys per parameter
    state = donor.state_dict()
    load_optimizer_state(target, state)  # torch loads it as given (keys are not checked)
    assert set(target.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
