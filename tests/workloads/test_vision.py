"""Vision workloads on tiny real-format data: models, zero-copy data path, training semantics."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
import yaml

from pbtune.errors import UserError
from pbtune.workloads import get, vision
from pbtune.workloads.models import build_model, count_parameters

from .fixtures_vision import OPTIONS_FACTORIES, cifar10_options

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict]:
    options = cifar10_options(tmp_path_factory.mktemp("cifar10"))
    data = get("resnet18-cifar10").load_data(options)
    for array in data.values():
        array.flags.writeable = False  # as the object store hands them out
    return options, data


def _build(cifar: tuple[dict, dict], seed: int = 0, **options: Any) -> vision.VisionWorkload:
    base, data = cifar
    return get("resnet18-cifar10")({"batch_size": 8}, data=data, options={**base, **options},
                                   seed=seed)


def _steps(workload: vision.VisionWorkload) -> list[int]:
    """Count optimiser steps through torch's own hook; returns the live counter."""
    counter = [0]
    workload.optimizer.register_step_post_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


def test_standard_models_are_torchvision_architectures(one_thread) -> None:
    ours = build_model("resnet18", 10, in_shape=(3, 32, 32), cifar_stem=False)
    ref = torchvision.models.resnet18(weights=None, num_classes=10)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()}
    stem = build_model("resnet18", 10, in_shape=(3, 32, 32))
    assert count_parameters(stem) == count_parameters(ref) - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    assert isinstance(stem.maxpool, torch.nn.Identity) and stem.conv1.stride == (1, 1)
    r50 = build_model("resnet50", 100, in_shape=(3, 32, 32), cifar_stem=False)
    ref50 = torchvision.models.resnet50(weights=None, num_classes=100)
    assert count_parameters(r50) == count_parameters(ref50)
    mlp = build_model("mlp", 10, in_shape=(1, 28, 28))
    linear = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 256), (256, 128), (128, 10)]


@pytest.mark.parametrize(("arch", "classes", "final"), [("resnet18", 10, 64), ("resnet50", 100,
                                                                               256)])
def test_narrow_resnets_scale_every_stage(arch: str, classes: int, final: int, one_thread) -> None:
    model = build_model(arch, classes, in_shape=(3, 32, 32), width=8)
    assert model.conv1.out_channels == 8 and model.fc.in_features == final
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, classes)


def test_registered_workloads_and_defaults() -> None:
    for name in OPTIONS_FACTORIES:
        cls = get(name)
        assert cls.metrics == {"accuracy": "max", "loss": "min"}
        assert cls.default_metric == "accuracy" and cls.default_config["batch_size"] == 512
        assert set(cls.default_mutations) == {"lr", "momentum", "weight_decay", "batch_size"}
        assert cls.default_options["val_size"] == 5000 and cls.default_options["split_seed"] == 0
    assert get("mlp-fashionmnist").default_options["augment"] is False


def test_training_reads_the_shared_arrays_without_copying(cifar) -> None:
    _, data = cifar
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the read-only warning is handled, nothing else fires
        workload = _build(cifar)
        result = workload.train(1)
    for split in ("train", "val", "test"):
        assert workload._x[split].data_ptr() == data[f"{split}_x"].ctypes.data
        assert workload._y[split].data_ptr() == data[f"{split}_y"].ctypes.data
    assert np.isfinite(result["loss"]) and 0.0 <= result["train_accuracy"] <= 1.0


def test_batch_size_steps_and_epochs_per_iteration(cifar) -> None:
    workload = _build(cifar, steps_per_iteration=None, subset=20)  # 20 training images
    steps = _steps(workload)
    workload.train(1)
    assert steps[0] == 3  # batches of 8, 8, 4
    workload.apply_hyperparameters({"batch_size": 5})
    workload.train(1)
    assert steps[0] == 3 + 4
    capped = _build(cifar, steps_per_iteration=2, epochs_per_iteration=3)
    capped_steps = _steps(capped)
    capped.train(2)
    assert capped_steps[0] == 4 and capped.iteration == 2
    two_epochs = _build(cifar, steps_per_iteration=None, epochs_per_iteration=2, subset=16)
    two_steps = _steps(two_epochs)
    two_epochs.train(1)
    assert two_steps[0] == 4


def test_exploit_keeps_the_targets_random_streams(cifar) -> None:
    donor, target = _build(cifar, seed=0), _build(cifar, seed=1)
    donor.train(1)
    target.set_state(donor.get_state(), include_rng=False)
    twin = _build(cifar, seed=5)
    twin.set_state(donor.get_state(), include_rng=True)
    for w in (donor, target, twin):
        w.train(1)
    weights = [w.model.fc.weight.detach() for w in (donor, target, twin)]
    assert torch.equal(weights[0], weights[2])  # same state + same streams: bit-for-bit
    assert not torch.equal(weights[0], weights[1])  # own data order and augmentation


def test_evaluate_on_the_held_out_test_split(cifar) -> None:
    workload = _build(cifar)
    val, test = workload.evaluate(), workload.evaluate(split="test")
    assert set(val) == set(test) == {"accuracy", "loss"}
    assert workload._x["test"].shape[0] == 8 and workload._x["val"].shape[0] == 8
    with pytest.raises(ValueError, match="split"):
        workload.evaluate(split="train")


def test_slowdown_sleeps_in_proportion_to_compute(cifar, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(vision.time, "sleep", slept.append)
    clock = iter([0.0, 0.5])  # start and end of the iteration, seconds
    monkeypatch.setattr(vision.time, "perf_counter", lambda: next(clock))
    _build(cifar, slowdown=3.0).train(1)
    assert slept == [pytest.approx(2 * 0.5)]


def test_bad_options_and_mismatched_data_are_user_errors(cifar, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown options \\['widht'\\]"):
        _build(cifar, widht=4)
    with pytest.raises(UserError, match=r"slowdown must be >= 1\.0"):
        _build(cifar, slowdown=0.5)
    _, data = cifar
    fake_fmnist = {k: (v[:, 0, :28, :28] if k.endswith("_x") else v) for k, v in data.items()}
    with pytest.raises(UserError, match="expected \\(3, 32, 32\\)"):
        get("resnet18-cifar10")({}, data=fake_fmnist, options=cifar[0])
    with pytest.raises(UserError, match="CIFAR-100 not found"):
        get("resnet50-cifar100").load_data({"data_dir": str(tmp_path), "download": False})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_shares_one_device_copy_between_trials(cifar) -> None:
    base, data = cifar
    cls = get("resnet18-cifar10")
    a = cls({"batch_size": 8}, data=data, options=base, seed=0, device="cuda")
    b = cls({"batch_size": 8}, data=data, options=base, seed=1, device="cuda")
    assert a._x["train"].data_ptr() == b._x["train"].data_ptr()
    assert a._x["train"].device.type == "cuda" and a._amp and a._channels_last
    assert np.isfinite(a.train(1)["loss"]) and np.isfinite(a.evaluate()["loss"])


@pytest.mark.parametrize("preset", ["resnet18-cifar10", "resnet50-cifar100", "mlp-fashionmnist"])
def test_presets_mirror_the_original_experiments(preset: str) -> None:
    config = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())
    assert config["workload"] == preset and get(preset).name == preset
    assert config["population"] == 20 and config["param_space"]["batch_size"] == 512
    assert config["stop"] == {"max_iterations": 1000, "metric_threshold": 0.8}
    assert config["checkpoint_interval"] == 50 and config["report_interval"] == 300
    assert set(config["pbt"]["hyperparam_mutations"]) == {"lr", "momentum", "weight_decay"}
    assert config["metric"] == "accuracy" and config["mode"] == "max"


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32),
                                                  ("bf16", torch.bfloat16)])
def test_precision_is_the_autocast_dtype_on_any_device(cifar, precision, dtype) -> None:
    """resources.precision reaches the workload as ``precision=``: bf16 autocasts the convolutions
    (on CPU too, for ``precision.cpu: bf16``), fp32 leaves them alone; the state stays fp32."""
    base, data = cifar
    w = get("resnet18-cifar10")({"batch_size": 8}, data=data, seed=0,
                                options={**base, "steps_per_iteration": 1}, precision=precision)
    seen: list[torch.dtype] = []
    conv = next(m for m in w.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    assert math.isfinite(w.train(1)["loss"])
    assert seen and set(seen) == {dtype}
    assert all(v.dtype == torch.float32 for v in w.get_state()["model"].values()
               if v.is_floating_point())
