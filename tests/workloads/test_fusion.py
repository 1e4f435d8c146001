"""Fused members train exactly as K unfused trials (pbtune.workloads.fusion, fused_optim).

The exact checks use a float64 model (a MLP with BatchNorm): there fused and unfused differ by
rounding of ~1e-15, so a wrong formula, a member's data order or BatchNorm statistics mixed
into another's, or a hyperparameter applied to the wrong member shows at once. The built-in
workloads are checked in float32, where grouped kernels round differently (and a ReLU on an
exact tie can flip), so over few iterations and with a tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from pbtune.workloads import get
from pbtune.workloads.fusion import fusion_key, train_and_evaluate
from tests.workloads.fixtures_vision import OPTIONS_FACTORIES
from tests.workloads.fusion_examples import CONFIGS, OPTIMIZERS, Mlp64


def _pairs(cls: type, configs: list[dict[str, Any]], options: dict[str, Any]) -> tuple[list, list]:
    data = cls.load_data(options)
    make = [lambda c=c, i=i: cls(c, data=data, options=options, seed=40 + i)
            for i, c in enumerate(configs)]
    return [m() for m in make], [m() for m in make]


def _flat(state: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a state by path (tensors and numbers)."""
    if isinstance(state, Mapping):
        out: dict[str, Any] = {}
        for k, v in state.items():
            out.update(_flat(v, f"{prefix}/{k}"))
        return out
    if isinstance(state, list | tuple):
        return _flat(dict(enumerate(state)), prefix)
    return {prefix: state}


def assert_states_close(a: Any, b: Any, atol: float) -> None:
    fa, fb = _flat(a.get_state()), _flat(b.get_state())
    assert fa.keys() == fb.keys()
    for key, va in fa.items():
        vb = fb[key]
        if isinstance(va, torch.Tensor) and va.is_floating_point():
            torch.testing.assert_close(va, vb, atol=atol, rtol=0, msg=key)
        elif isinstance(va, torch.Tensor):
            assert torch.equal(va, vb), key
        elif isinstance(va, float):
            assert va == pytest.approx(vb, abs=atol), key
        else:
            assert va == vb, key


def _both(fused: list, plain: list, atol: float) -> None:
    """One iteration both ways; every member's metrics and state agree."""
    outs = train_and_evaluate(fused)
    metric_atol = max(atol, 1e-6)  # the vision workloads sum their metrics in float32:
    metric_rel = 1e-6  # to its rounding (relative), whatever the model's dtype
    for (train, evaluated), ref in zip(outs, plain, strict=True):
        ref_train, ref_eval = ref.train(1), ref.evaluate()
        assert train.keys() == ref_train.keys() and evaluated.keys() == ref_eval.keys()
        for key in train:
            assert train[key] == pytest.approx(ref_train[key], abs=metric_atol,
                                               rel=metric_rel), key
        for key in evaluated:
            assert evaluated[key] == pytest.approx(ref_eval[key], abs=metric_atol,
                                                   rel=metric_rel), key
    for a, b in zip(fused, plain, strict=True):
        assert_states_close(a, b, atol)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fused_members_match_unfused_trials_across_explore_and_exploit(optimizer: str) -> None:
    # Adam divides by sqrt(v) + 1e-8: where v is ~0 (a unit that barely moved) a rounding
    # difference of 1e-17 in a gradient becomes 1e-9 in a step; SGD passes it on as is.
    atol = 1e-6 if optimizer.startswith("adam") else 1e-10
    fused, plain = _pairs(Mlp64, CONFIGS, {"optimizer": optimizer})
    assert len({fusion_key(w) for w in fused}) == 1
    for _ in range(3):
        _both(fused, plain, atol)
    for side in (fused, plain):  # explore: new hyperparameters in place
        side[1].apply_hyperparameters({"lr": 0.03, "momentum": 0.8})
        side[2].apply_hyperparameters({"weight_decay": 0.0, "momentum": 0.0})
        # exploit: member 3 takes member 0's weights and optimiser state, keeps its data order
        side[3].set_state(side[0].get_state(), include_rng=False)
        side[3].apply_hyperparameters({"lr": 0.07})
    for _ in range(3):
        _both(fused, plain, atol)


def test_a_member_taken_out_continues_unfused_as_if_never_fused() -> None:
    fused, plain = _pairs(Mlp64, CONFIGS, {})
    for _ in range(2):
        train_and_evaluate(fused)
        for p in plain:
            p.train(1)
    moved = Mlp64(CONFIGS[2], data=Mlp64.load_data({}), seed=99)
    moved.set_state(fused[2].get_state())
    for _ in range(2):
        assert moved.train(1)["loss"] == pytest.approx(plain[2].train(1)["loss"], abs=1e-10)
    assert_states_close(moved, plain[2], 1e-10)


def test_members_resumed_into_a_group_continue_as_unfused() -> None:
    """A member loaded from a state (resume, a move between workers) fuses on from there."""
    fused, plain = _pairs(Mlp64, CONFIGS, {"optimizer": "nesterov"})
    for p in plain:
        p.train(1)
    for f, p in zip(fused, plain, strict=True):
        f.set_state(p.get_state())
    for _ in range(2):
        _both(fused, plain, 1e-10)


def test_groups_split_by_batch_size_and_unsupported_settings() -> None:
    data = Mlp64.load_data({})
    base = Mlp64(CONFIGS[0], data=data, seed=1)
    assert fusion_key(Mlp64(CONFIGS[1], data=data, seed=2)) == fusion_key(base)
    assert fusion_key(Mlp64({**CONFIGS[0], "batch_size": 32}, data=data, seed=3)) \
        != fusion_key(base)
    assert fusion_key(Mlp64(CONFIGS[0], data=data, seed=4,
                            options={"accumulation_steps": 2})) is None
    assert fusion_key(Mlp64(CONFIGS[0], data=data, seed=4, options={"slowdown": 2.0})) is None
    partway = Mlp64(CONFIGS[0], data=data, seed=5, options={"steps_per_iteration": 2})
    partway.train(1)  # mid-epoch: another position in its data
    assert fusion_key(partway) != fusion_key(Mlp64(CONFIGS[0], data=data, seed=6,
                                                   options={"steps_per_iteration": 2}))
    assert fusion_key(get("pbt-toy")({}, seed=0)) is None  # not fusible


def test_digits_cnn_fused_matches_unfused_to_float32_rounding() -> None:
    configs = [{"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 64},
               {"lr": 0.02, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 64},
               {"lr": 0.1, "momentum": 0.5, "weight_decay": 1e-3, "batch_size": 64}]
    fused, plain = _pairs(get("digits-cnn"), configs, {"threads": 1})
    _both(fused, plain, 2e-4)


def _float64(workload: Any) -> Any:
    """The vision workload's model and inputs in float64 (its own code runs unchanged)."""
    workload.model.double()
    inputs = workload._inputs
    workload._inputs = lambda images, train: inputs(images, train).double()
    return workload


@pytest.mark.parametrize("name", ["mlp-fashionmnist", "resnet18-cifar10"])
def test_vision_fused_matches_unfused_with_per_member_batchnorm(name: str,
                                                                tmp_path: Path) -> None:
    options = {**OPTIONS_FACTORIES[name](tmp_path), "augment": True}
    configs = [{**c, "batch_size": 8} for c in CONFIGS[:3]]
    fused, plain = _pairs(get(name), configs, options)
    fused, plain = [_float64(w) for w in fused], [_float64(w) for w in plain]
    for _ in range(3):
        _both(fused, plain, 1e-9)
    if name.startswith("resnet"):  # BatchNorm statistics stayed each member's own
        means = [f.model.bn1.running_mean for f in fused]
        assert not torch.allclose(means[0], means[1])


def test_resnet_fused_in_float32_matches_for_an_iteration(tmp_path: Path) -> None:
    """As trained (float32, augmented): the first iteration agrees to rounding; later ones drift
    apart as any two float32 runs of a chaotic net with different kernels do."""
    options = OPTIONS_FACTORIES["resnet18-cifar10"](tmp_path)
    fused, plain = _pairs(get("resnet18-cifar10"), [{**c, "batch_size": 8} for c in CONFIGS[:2]],
                          options)
    _both(fused, plain, 1e-3)
