"""``digits-cnn`` behaviour the engines and benchmarks depend on (plus its torch helpers)."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from pbtune.errors import UserError
from pbtune.workloads import _torch_utils as tu
from pbtune.workloads import digits as digits_module
from pbtune.workloads import torch_workload as torch_workload_module
from pbtune.workloads.digits import DigitsCNN

SMALL = {"width": 4, "threads": 1}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return DigitsCNN.load_data({})


def _run(workload: DigitsCNN, iterations: int) -> list[tuple[dict, dict]]:
    return [(workload.train(1), workload.evaluate()) for _ in range(iterations)]


def _count_steps(workload: DigitsCNN) -> list[int]:
    counter = [0]
    workload.optimizer.register_step_post_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


def test_split_is_fixed_and_stratified(data: dict[str, np.ndarray]) -> None:
    assert data["train_x"].shape == (1437, 1, 8, 8) and data["val_x"].shape == (360, 1, 8, 8)
    assert data["train_x"].dtype == np.float32 and data["train_y"].dtype == np.int64
    assert 0.0 <= data["train_x"].min() and data["train_x"].max() == 1.0
    again = DigitsCNN.load_data({"split_seed": 0})
    assert all(np.array_equal(data[k], again[k]) for k in data)
    val = np.bincount(data["val_y"], minlength=10)
    total = val + np.bincount(data["train_y"], minlength=10)
    assert np.all(np.abs(val - 0.2 * total) <= 1)  # every class split 80/20 to the image
    other = DigitsCNN.load_data({"split_seed": 1})
    assert not np.array_equal(data["val_x"], other["val_x"])
    assert DigitsCNN.load_data({"val_fraction": 0.5})["val_y"].shape == (899,)


def test_read_digits_matches_sklearn_load_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_digits

    reference = load_digits()
    images, targets = digits_module.read_digits()  # the direct CSV read
    assert np.array_equal(images, reference.images) and np.array_equal(targets, reference.target)
    assert targets.dtype == np.int64 and images.shape == (1797, 8, 8)
    # No scikit-learn data file where it is expected: falls back to load_digits, same arrays.
    monkeypatch.setattr(digits_module.importlib.util, "find_spec", lambda name: None)
    images2, targets2 = digits_module.read_digits()
    assert np.array_equal(images2, reference.images) and np.array_equal(targets2, targets)


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown options"):
        DigitsCNN.load_data({"widht": 8})
    with pytest.raises(UserError, match="slowdown"):
        DigitsCNN({}, options={"slowdown": 0.5})
    with pytest.raises(KeyError, match="batch_size"):
        DigitsCNN({"learning_rate": 0.1}, options=SMALL)
    with pytest.raises(UserError, match="channels_last must be true or false"):
        DigitsCNN({}, options={**SMALL, "channels_last": "yes"})


def test_read_only_arrays_are_accepted_and_untouched(data: dict[str, np.ndarray]) -> None:
    frozen = {k: v.copy() for k, v in data.items()}
    for arr in frozen.values():
        arr.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workload = DigitsCNN({}, data=frozen, options=SMALL, seed=0)
        workload.train(1)
        workload.evaluate()
    assert all(np.array_equal(frozen[k], data[k]) for k in data)


def test_construction_leaves_global_rng_alone(data: dict[str, np.ndarray]) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = DigitsCNN({}, data=data, options=SMALL, seed=5)
    assert torch.equal(torch.rand(3), expected)
    b = DigitsCNN({}, data=data, options=SMALL, seed=5)
    c = DigitsCNN({}, data=data, options=SMALL, seed=6)
    assert torch.equal(a.model.conv1.weight, b.model.conv1.weight)
    assert not torch.equal(a.model.conv1.weight, c.model.conv1.weight)


def test_bit_for_bit_continuation(data: dict[str, np.ndarray], one_thread: None) -> None:
    original = DigitsCNN({}, data=data, options=SMALL, seed=0)
    _run(original, 2)
    state = original.get_state()
    expected = _run(original, 2)
    resumed = DigitsCNN({"lr": 0.3}, data=data, options=SMALL, seed=99)
    resumed.set_state(state)
    assert resumed.config == original.config and resumed.iteration == 2
    assert _run(resumed, 2) == expected
    assert resumed.iteration == 4
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(),
                                                 original.model.state_dict().values(), strict=True))


def test_include_rng_false_keeps_own_stream(data: dict[str, np.ndarray], one_thread: None) -> None:
    donor = DigitsCNN({}, data=data, options=SMALL, seed=0)
    _run(donor, 2)
    state = donor.get_state()
    target = DigitsCNN({}, data=data, options=SMALL, seed=1)
    own_rng = target.generator.get_state()
    target.set_state(state, include_rng=False)
    assert torch.equal(target.generator.get_state(), own_rng)
    assert torch.equal(target.model.fc2.weight, donor.model.fc2.weight)
    assert _run(target, 1) != _run(donor, 1)  # same weights, different data order


def test_channels_last_changes_layout_not_learning(
    data: dict[str, np.ndarray], one_thread: None
) -> None:
    """NHWC is a kernel choice: same init, same data order, results equal up to rounding, and a
    state saved in one layout (an NCHW checkpoint from before the option) continues in the other."""
    nhwc = DigitsCNN({}, data=data, options=SMALL, seed=3)
    nchw = DigitsCNN({}, data=data, options={**SMALL, "channels_last": False}, seed=3)
    weight = nhwc.model.conv2.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert nchw.model.conv2.weight.is_contiguous()
    assert nhwc.optimizer.param_groups[0]["params"][2] is weight  # the optimiser holds NHWC ones
    for (train_a, eval_a), (train_b, eval_b) in zip(_run(nhwc, 2), _run(nchw, 2), strict=True):
        assert train_a["loss"] == pytest.approx(train_b["loss"], rel=1e-4)
        assert eval_a["loss"] == pytest.approx(eval_b["loss"], rel=1e-4)
    continued = DigitsCNN({}, data=data, options=SMALL, seed=9)
    continued.set_state(nchw.get_state())
    assert continued.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    (train_c, eval_c), = _run(continued, 1)
    (train_b, eval_b), = _run(nchw, 1)
    assert train_c["loss"] == pytest.approx(train_b["loss"], rel=1e-4)
    assert eval_c["accuracy"] == pytest.approx(eval_b["accuracy"], abs=1 / 360)


def test_batch_size_changes_steps_per_epoch(data: dict[str, np.ndarray]) -> None:
    workload = DigitsCNN({}, data=data, options=SMALL, seed=0)
    steps = _count_steps(workload)
    optimizer = workload.optimizer
    workload.train(1)
    assert steps[0] == math.ceil(1437 / 64)
    workload.apply_hyperparameters({"batch_size": 128, "lr": 0.01})
    workload.train(1)
    assert steps[0] == math.ceil(1437 / 64) + math.ceil(1437 / 128)
    assert workload.optimizer is optimizer and optimizer.param_groups[0]["lr"] == 0.01
    assert workload.config["batch_size"] == 128
    twice = DigitsCNN({"batch_size": 500}, data=data, options={**SMALL, "epochs_per_iteration": 2})
    steps = _count_steps(twice)
    twice.train(1)
    assert steps[0] == 2 * 3 and twice.iteration == 1


def test_momentum_buffers_survive_apply(data: dict[str, np.ndarray]) -> None:
    workload = DigitsCNN({}, data=data, options=SMALL, seed=0)
    workload.train(1)
    buffers = {id(s["momentum_buffer"]) for s in workload.optimizer.state.values()}
    workload.apply_hyperparameters({"momentum": 0.5, "weight_decay": 0.0})
    assert {id(s["momentum_buffer"]) for s in workload.optimizer.state.values()} == buffers
    assert all(g["momentum"] == 0.5 for g in workload.optimizer.param_groups)
    with pytest.raises(KeyError, match="weight_decay"):
        workload.apply_hyperparameters({"dropout": 0.1})


def test_divergence_is_returned_not_raised(data: dict[str, np.ndarray]) -> None:
    workload = DigitsCNN({"lr": 1e6}, data=data, options=SMALL, seed=0)
    result = workload.train(1)
    assert not math.isfinite(result["loss"])
    assert not math.isfinite(workload.evaluate()["loss"])


def test_slowdown_sleeps_in_proportion(
    data: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(torch_workload_module.time, "sleep", sleep)
    DigitsCNN({}, data=data, options=SMALL).train(1)
    assert slept == []  # slowdown 1.0: no sleep at all
    workload = DigitsCNN({}, data=data, options={**SMALL, "slowdown": 3.0})
    start = time.perf_counter()
    workload.train(1)
    wall = time.perf_counter() - start
    assert len(slept) == 1 and slept[0] > 0.0
    assert wall >= slept[0]  # it really slept
    assert slept[0] <= 2.0 * (wall - slept[0]) + 1e-3  # (3 - 1) × compute, compute ≤ the rest


def test_default_config_learns(data: dict[str, np.ndarray], one_thread: None) -> None:
    workload = DigitsCNN({}, data=data, options={"threads": 1}, seed=0)
    curve = []
    for _ in range(8):
        workload.train(1)
        curve.append(workload.evaluate()["accuracy"])
        if curve[-1] >= 0.9:
            break
    assert curve[-1] >= 0.9, curve


# --- pbtune.workloads._torch_utils -------------------------------------------------------------


def test_state_to_cpu_copies_recursively() -> None:
    tensor = torch.ones(2, requires_grad=True)
    state: dict[str, Any] = {"a": [tensor, (tensor, 3)], "b": {"c": tensor}, "d": "x"}
    copied = tu.state_to_cpu(state)
    with torch.no_grad():
        tensor.add_(1)
    assert torch.equal(copied["b"]["c"], torch.ones(2)) and not copied["b"]["c"].requires_grad
    assert copied["a"][1][1] == 3 and copied["d"] == "x" and isinstance(copied["a"][1], tuple)


def test_param_groups_generator_threads_and_finite() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=0.1)
    tu.set_param_groups(optimizer, lr=0.01)
    assert optimizer.param_groups[0]["lr"] == 0.01
    with pytest.raises(KeyError, match="betas"):
        tu.set_param_groups(optimizer, momentum=0.9)
    gen = tu.seeded_generator(7)
    saved = tu.generator_state(gen)
    first = torch.randperm(10, generator=gen)
    tu.restore_generator(gen, saved)
    assert torch.equal(torch.randperm(10, generator=gen), first)
    before = torch.get_num_threads()
    assert tu.configure_threads(None) == before
    assert tu.configure_threads(1) == 1
    torch.set_num_threads(before)
    assert tu.is_finite(1.0) and not tu.is_finite(float("nan"))
    assert not tu.is_finite(torch.tensor(math.inf))


def test_a_checkpoint_from_before_the_torch_workload_port_still_loads(
        data: dict[str, np.ndarray], one_thread: None) -> None:
    """digits states used to hold the data-order generator state as a bare tensor under "rng"
    and no scheduler/scaler: such a checkpoint resumes, continuing that data order."""
    source = DigitsCNN({}, data=data, options=SMALL, seed=0)
    source.train(1)
    new = source.get_state()
    old = {"model": new["model"], "optimizer": new["optimizer"],
           "rng": new["rng"]["order"]["generator"], "iteration": new["iteration"],
           "config": new["config"]}
    resumed = DigitsCNN({}, data=data, options=SMALL, seed=7)
    resumed.set_state(old)
    assert resumed.iteration == 1
    assert resumed.train(1)["loss"] == source.train(1)["loss"]
