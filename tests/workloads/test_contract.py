"""The Workload contract, checked for every registered workload.

Why: engines rely on exactly these behaviours (finite loss, every declared metric, a state that
restores bit-for-bit and pickles with CPU tensors, in-place hyperparameter changes). Parametrising
over the registry means a new workload is tested the moment it registers; one without an options
factory in a ``fixtures_*.py`` file fails with instructions instead of being skipped.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pbtune.workloads import get, list_workloads
from pbtune.workloads.base import Workload, missing_methods

WORKLOADS = list_workloads()


@dataclass
class Case:
    name: str
    cls: type[Workload]
    options: dict[str, Any]
    data: Any

    def build(self, seed: int = 0) -> Workload:
        return self.cls(dict(self.cls.default_config), data=self.data, options=self.options,
                        seed=seed, device="cpu")


def _missing_factory_message(name: str) -> str:
    return (f"workload {name!r} has no options factory: add it to OPTIONS_FACTORIES in a "
            f"tests/workloads/fixtures_<family>.py file (factory(tmp_path) -> options, tiny data)")


@pytest.fixture(scope="module", params=WORKLOADS)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         options_factories: dict) -> Case:
    name = request.param
    if name not in options_factories:
        pytest.fail(_missing_factory_message(name))
    options = options_factories[name](Path(tmp_path_factory.mktemp(name)))
    cls = get(name)
    return Case(name, cls, options, cls.load_data(options))


def _tensors(obj: Any) -> list[Any]:
    """Every torch tensor and numpy array in a (nested) state."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _optimizers(workload: Workload) -> list[torch.optim.Optimizer]:
    """Optimisers held as attributes, or in a dict attribute (a GAN's two), each once."""
    found: dict[int, torch.optim.Optimizer] = {}
    for value in vars(workload).values():
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, torch.optim.Optimizer):
                found.setdefault(id(item), item)
    return list(found.values())


def _changed(value: Any) -> Any:
    """A different valid-looking value: half a float, half an int (≥ 1), a flipped bool."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value // 2 if value >= 2 else value + 1
    if isinstance(value, float):
        return value * 0.5 if value != 0.0 else 0.1
    return None


@pytest.mark.parametrize("name", WORKLOADS)
def test_has_options_factory(name: str, options_factories: dict) -> None:
    assert name in options_factories, _missing_factory_message(name)


@pytest.mark.parametrize("name", WORKLOADS)
def test_class_attributes_consistent(name: str) -> None:
    cls = get(name)
    assert cls.name == name
    assert missing_methods(cls) == []
    assert cls.metrics and set(cls.metrics.values()) <= {"max", "min"}
    assert cls.default_metric in cls.metrics
    assert set(cls.default_config) == set(cls.hyperparameters)
    assert set(cls.default_param_space) <= set(cls.hyperparameters)
    assert set(cls.default_mutations) <= set(cls.hyperparameters)


def test_train_evaluate_and_state_round_trip(case: Case) -> None:
    workload = case.build(seed=0)
    train = workload.train(1)
    assert math.isfinite(float(train["loss"])), train
    assert workload.iteration == 1
    metrics = workload.evaluate()
    assert set(case.cls.metrics) <= set(metrics)
    assert all(math.isfinite(float(metrics[m])) for m in case.cls.metrics), metrics

    state = workload.get_state()
    assert {"iteration", "config"} <= set(state)
    assert state["iteration"] == 1
    tensors = _tensors(state)
    assert tensors, "the state holds the trial's parameters as tensors or arrays"
    assert all(t.device.type == "cpu" for t in tensors if isinstance(t, torch.Tensor))
    restored_from_bytes = pickle.loads(pickle.dumps(state))

    fresh = case.build(seed=12345)  # different init and stream: everything must come from state
    fresh.set_state(restored_from_bytes)
    assert fresh.iteration == 1
    assert fresh.evaluate() == metrics

    # The state is a copy: training on does not change it.
    before = [t.clone() if isinstance(t, torch.Tensor) else t.copy() for t in tensors]
    workload.train(1)
    assert all(_equal(a, b) for a, b in zip(before, _tensors(state), strict=True))


def test_set_state_takes_a_copy_and_replays_exactly(case: Case) -> None:
    """A state handed to ``set_state`` (a donor's snapshot, which an exploit may hand to several
    targets) must not be aliased: ``Optimizer.load_state_dict`` keeps CPU tensors it is given,
    so a target training on would change the donor's momentum under every other reader. And two
    trials loaded from one state train identically: nothing outside the state matters."""
    source = case.build(seed=0)
    source.train(1)
    state = source.get_state()
    tensors = _tensors(state)
    before = [t.clone() if isinstance(t, torch.Tensor) else t.copy() for t in tensors]
    a, b = case.build(seed=1), case.build(seed=2)
    a.set_state(state)
    first = a.train(1)
    assert all(_equal(x, y) for x, y in zip(before, _tensors(state), strict=True)), (
        "training after set_state changed the state it was given (load a copy)")
    b.set_state(state)
    assert b.train(1) == first


def _equal(a: Any, b: Any) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else np.array_equal(a, b)


def _same(a: Any, b: Any) -> bool:
    """Equal structure and values, tensors compared by dtype, device and value."""
    if isinstance(a, (torch.Tensor, np.ndarray)):
        return type(a) is type(b) and a.dtype == b.dtype and _equal(a, b) and (
            not isinstance(a, torch.Tensor) or a.device == b.device)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(
            _same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_copies_into_reused_buffers_are_get_state(case: Case) -> None:
    """A worker that holds large states copies them with ``state_view()`` into memory it reuses
    (engines/native/buffers.py). The copy must be exactly ``get_state()``, and a copy taken into
    the memory of an older one must not keep anything of it."""
    from pbtune.engines.native.buffers import CopyBuffers

    workload = case.build(seed=0)
    workload.train(1)
    buffers = CopyBuffers(limit=1)
    first = buffers.copy(workload)
    assert _same(first, workload.get_state())
    del first
    workload.train(1)
    second = buffers.copy(workload)
    assert _same(second, workload.get_state())
    if callable(getattr(workload, "state_view", None)):
        assert buffers.reused == 1, "state_view() exists but the copy did not reuse memory"
    fresh = case.build(seed=7)
    fresh.set_state(pickle.loads(pickle.dumps(second)))
    assert fresh.evaluate() == workload.evaluate()


def test_apply_hyperparameters_in_place(case: Case) -> None:
    workload = case.build(seed=0)
    workload.train(1)  # so optimisers hold buffers
    optimizers = _optimizers(workload)
    if any(isinstance(t, torch.Tensor) for t in _tensors(workload.get_state())):
        assert optimizers, "a torch workload keeps its optimiser(s) as attributes"
    ids = [id(opt) for opt in optimizers]
    buffers = [id(t) for opt in optimizers for s in opt.state.values() for t in s.values()
               if isinstance(t, torch.Tensor)]
    for key in case.cls.hyperparameters:
        new = _changed(workload.config[key])
        if new is None:
            continue
        workload.apply_hyperparameters({key: new})
        assert workload.config[key] == new
        groups = [g for opt in _optimizers(workload) for g in opt.param_groups if key in g]
        # under an LR scheduler the hyperparameter is the schedule's base (initial_lr); the
        # current lr is that base times the schedule's factor
        values = [g["initial_lr" if key == "lr" and "initial_lr" in g else key] for g in groups]
        assert all(float(v) == pytest.approx(float(new)) for v in values), key
    assert [id(opt) for opt in _optimizers(workload)] == ids
    assert [id(t) for opt in optimizers for s in opt.state.values() for t in s.values()
            if isinstance(t, torch.Tensor)] == buffers
    assert math.isfinite(float(workload.train(1)["loss"]))


def test_unknown_hyperparameter_raises_key_error(case: Case) -> None:
    workload = case.build(seed=0)
    with pytest.raises(KeyError, match=case.cls.hyperparameters[0]):
        workload.apply_hyperparameters({"no_such_hyperparameter": 1.0})
