"""Issue 16: the CUDA paths' defects that show without a GPU, tested on CPU with mocked devices
(``meta`` tensors stand for device tensors: every op runs, nothing is computed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pbtune.workloads import augment, shared_data

META = torch.device("meta")


def test_normalize_builds_its_constants_once_per_device(monkeypatch):
    """``torch.tensor(list, device=cuda)`` per batch is a blocking copy (two per step)."""
    calls = []
    real = torch.tensor

    def counting(*args, **kwargs):
        calls.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", counting)
    images = torch.zeros((4, 3, 8, 8), dtype=torch.uint8, device=META)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    augment.normalize(images, mean, std)
    first = len(calls)
    for _ in range(5):
        out = augment.normalize(images, mean, std)
    assert len(calls) == first  # nothing built per batch
    assert all(device is None for device in calls)  # never built on the device itself
    assert out.device == META and out.shape == images.shape
    # The cached map is the same affine map: (x / 255 - mean) / std.
    cpu = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    want = (cpu.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1)
    torch.testing.assert_close(augment.normalize(cpu, mean, std), want)


def test_views_of_one_array_share_one_device_copy():
    """``options.subset`` makes a new view per trial; each used to upload its own copy."""
    shared_data.clear_device_cache()
    base = np.arange(1000, dtype=np.uint8)
    first = shared_data.shared_tensor(base[:100], META)
    again = shared_data.shared_tensor(base[:100], META)  # a new view object, same memory
    assert again is first and first.device == META and first.shape == (100,)
    assert shared_data.shared_tensor(base[:200], META) is not first  # other memory: other copy
    assert shared_data.shared_tensor(base[1:101], META) is not first
    other = np.arange(1000, dtype=np.uint8)
    assert shared_data.shared_tensor(other[:100], META) is not first
    shared_data.clear_device_cache()


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_cpu_tensors_stay_zero_copy(dtype):
    base = np.arange(10, dtype=dtype)
    assert shared_data.shared_tensor(base, torch.device("cpu")).data_ptr() == base.ctypes.data


def _vision(cifar, precision="fp32", seed=0):
    from pbtune.workloads import get

    base, data = cifar
    return get("resnet18-cifar10")({"batch_size": 8}, data=data, seed=seed, precision=precision,
                                   options={**base, "steps_per_iteration": 2})


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    from pbtune.workloads import get
    from tests.workloads.fixtures_vision import cifar10_options

    options = cifar10_options(tmp_path_factory.mktemp("cifar10"))
    return options, get("resnet18-cifar10").load_data(options)


def test_random_state_is_device_independent(cifar):
    """The augmentation generator lives on the training device (a CUDA generator's state is 16
    bytes, a CPU one's 5,056, and neither loads into the other); the trial state must hold only
    the CPU seed stream, so it loads on any worker and on a laptop."""
    w = _vision(cifar)
    w.train(1)
    state = w.get_state()
    cpu_state_size = torch.Generator().get_state().numel()
    assert {k: v.numel() for k, v in state["rng"].items()} == {
        "data": cpu_state_size, "augment": cpu_state_size}
    # What the device generator holds is not part of the state (it is reseeded per batch).
    w.aug_rng.device_generator.manual_seed(12345)
    torch.testing.assert_close(w.get_state()["rng"], state["rng"], rtol=0, atol=0)
    # The state replays: two trials loaded from it train identically.
    a, b = _vision(cifar, seed=1), _vision(cifar, seed=2)
    a.set_state(state)
    b.set_state(state)
    assert a.train(1) == b.train(1)
    torch.testing.assert_close(a.get_state()["model"], b.get_state()["model"], rtol=0, atol=0)


def test_fp16_keeps_its_loss_scale_in_the_state(cifar):
    """fp16 needs a GradScaler (bf16 is emulated, slowly, on cards without it); its scale is
    part of the trial, so exploit and resume continue with the donor's scale."""
    w = _vision(cifar, precision="fp16")
    assert w.precision == "fp16" and w.scaler.is_enabled()
    state = w.get_state()
    assert state["scaler"]["scale"] > 0
    state["scaler"]["scale"] = 1024.0  # a donor whose scale has adapted
    target = _vision(cifar, precision="fp16", seed=3)
    target.set_state(state)
    assert target.scaler.get_scale() == 1024.0
    del state["scaler"]  # states from before the scaler existed still load
    target.set_state(state)
    fp32 = _vision(cifar)
    assert not fp32.scaler.is_enabled() and fp32.get_state()["scaler"] == {}


def test_deterministic_switches_cudnn_and_torch_both_ways():
    from pbtune.workloads._torch_utils import set_determinism

    try:
        set_determinism(True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        set_determinism(False)
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        set_determinism(False)
        torch.backends.cudnn.benchmark = False


@pytest.mark.parametrize(("share", "capped"), [(0.25, 0.25), (0.5, 0.5), (1.0, None), (0.0, None)])
def test_gpu_worker_memory_is_capped_at_its_share(monkeypatch, share, capped):
    from pbtune.workloads import _torch_utils

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", calls.append)
    _torch_utils.limit_gpu_memory(share)
    assert calls == ([] if capped is None else [capped])


def test_gradients_are_freed_between_iterations(cifar):
    w = _vision(cifar)
    w.train(1)
    assert all(p.grad is None for p in w.model.parameters())
