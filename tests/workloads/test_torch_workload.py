"""The TorchWorkload contract, run over every TorchWorkload: the built-ins on it (from the
registry), the bring-your-own example, and test workloads with a scheduler, AdamW's beta1,
dropout, a hook, and a two-model GAN (tests/workloads/torch_examples.py).

build → train → state round trip (continues exactly) → exploit (donor's weights and optimiser
state, the target's own data order and noise) → hyperparameter change visible in the optimiser's
param groups, with the same optimiser objects and buffers."""

from __future__ import annotations

import math
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from pbtune.errors import UserError
from pbtune.workloads import get, hyperparams, list_workloads, registry
from pbtune.workloads.torch_workload import TorchWorkload
from tests.workloads.torch_examples import ScheduledAdam, TinyGAN

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_workload.py"


_DATA: dict[int, Any] = {}


@dataclass
class Case:
    cls: type[TorchWorkload]
    options: dict[str, Any]

    def build(self, seed: int = 0, **config: Any) -> TorchWorkload:
        data = _DATA.get(id(self))
        if data is None:  # once per case: a GAN's load_data trains (or reads) its classifier
            data = _DATA[id(self)] = self.cls.load_data(self.cls.resolve_options(self.options))
        return self.cls({**self.cls.default_config, **config}, data=data, options=self.options,
                        seed=seed)


def _cases(factories: dict) -> dict[str, Case]:
    scratch = Path(tempfile.mkdtemp(prefix="pbtune-torch-contract-"))  # data files, caches
    cases = {}
    for name in list_workloads():
        if name in factories and issubclass(get(name), TorchWorkload):
            (scratch / name).mkdir()
            cases[name] = Case(get(name), factories[name](scratch / name))
    cases["example"] = Case(registry.get(f"{EXAMPLE}:MyWorkload"), {})
    cases["scheduled-adam"] = Case(ScheduledAdam, {})
    cases["accumulating-adam"] = Case(ScheduledAdam, {"accumulation_steps": 2})
    cases["gan"] = Case(TinyGAN, {})
    return cases


from tests.workloads.conftest import OPTIONS_FACTORIES  # noqa: E402

CASES = _cases(OPTIONS_FACTORIES)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, one_thread: None) -> Case:
    return CASES[request.param]


def test_the_built_ins_on_torch_workload_are_in_the_contract() -> None:
    assert {"digits-cnn", "dcgan-digits", "dcgan-mnist"} <= set(CASES)


def _params(w: TorchWorkload) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v.detach().clone() for m, module in w.models.items()
            for k, v in module.state_dict().items()}


def _optimizer_tensors(w: TorchWorkload) -> list[torch.Tensor]:
    return [t for opt in w.optimizers.values() for s in opt.state.values() for t in s.values()
            if isinstance(t, torch.Tensor)]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_state_round_trip_continues_exactly(case: Case) -> None:
    a = case.build(seed=0)
    a.train(2)  # past an epoch boundary for the workloads whose iterations are N steps
    state = pickle.loads(pickle.dumps(a.get_state()))
    b = case.build(seed=99)
    b.set_state(state)
    assert b.iteration == 2 and _same(_params(a), _params(b))
    assert a.train(1) == b.train(1)
    assert _same(_params(a), _params(b)) and a.evaluate() == b.evaluate()


def test_exploit_copies_donor_weights_and_keeps_own_streams(case: Case) -> None:
    donor, target = case.build(seed=0), case.build(seed=1)
    donor.train(2)
    target.train(1)
    own = target.get_state()["rng"]
    donor_state = donor.get_state()
    target.set_state(donor_state, include_rng=False)
    assert _same(_params(target), _params(donor))
    assert all(torch.equal(x, y) for x, y in zip(_optimizer_tensors(target),
                                                _optimizer_tensors(donor), strict=True))
    assert target.iteration == donor.iteration and target.config == donor.config
    kept = target.get_state()["rng"]
    assert _equal_tree(kept, own), "exploit must keep the target's own streams"
    # From here the two differ only in their streams (data order, noise): they diverge.
    donor.train(1)
    target.train(1)
    assert not _same(_params(target), _params(donor))


def _equal_tree(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            _equal_tree(a[k], b[k]) for k in a)
    return a == b


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value // 2 if value >= 2 else value + 1
    return value * 0.5 if value else 0.1


def test_hyperparameter_change_reaches_the_param_groups_in_place(case: Case) -> None:
    w = case.build(seed=0)
    w.train(1)  # optimisers hold buffers now
    optimizers = {k: id(v) for k, v in w.optimizers.items()}
    buffers = [id(t) for t in _optimizer_tensors(w)]
    for key in case.cls.hyperparameters:
        new = _changed(w.config[key])
        w.apply_hyperparameters({key: new})
        assert w.config[key] == new
        routes = hyperparams.targets(key, case.cls.param_group_keys, w.optimizers)
        for opt_name, group_key in routes or ():
            for group in w.optimizers[opt_name].param_groups:
                if group_key in ("beta1", "beta2"):
                    got = group["betas"][group_key == "beta2"]
                else:
                    got = group["initial_lr" if group_key == "lr" and w.schedulers else group_key]
                assert float(got) == pytest.approx(float(new)), (key, opt_name)
        if key == "batch_size":
            assert w.batch_size == new
    assert {k: id(v) for k, v in w.optimizers.items()} == optimizers
    assert [id(t) for t in _optimizer_tensors(w)] == buffers
    assert math.isfinite(w.train(1)["loss"])


def test_one_hyperparameter_reaches_only_its_optimizer(one_thread: None) -> None:
    gan = Case(TinyGAN, {}).build()
    gan.apply_hyperparameters({"lr_g": 0.123})
    assert gan.optimizers["generator"].param_groups[0]["lr"] == 0.123
    assert gan.optimizers["discriminator"].param_groups[0]["lr"] == 2e-3
    gan.apply_hyperparameters({"beta1": 0.7})
    assert all(o.param_groups[0]["betas"] == (0.7, 0.999) for o in gan.optimizers.values())


def test_a_restored_scheduler_cannot_override_the_explored_lr(one_thread: None) -> None:
    """The known pitfall: load a donor's scheduler after changing lr, and the scheduler's base
    (the donor's lr) wins at its next step. Here the explored lr is the base from then on, at the
    schedule's position (warm-up 8 steps; one iteration = 4 steps)."""
    case = Case(ScheduledAdam, {})
    donor, target = case.build(seed=0, lr=0.01), case.build(seed=1, lr=0.02)
    donor.train(1)  # 4 steps: the warm-up factor is now 5/8
    target.set_state(donor.get_state(), include_rng=False)
    target.apply_hyperparameters({"lr": 0.05})  # explore, as the engine does after exploit
    group = target.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.05 * 5 / 8)
    target.train(1)  # 4 more steps: warm-up over
    assert group["lr"] == pytest.approx(0.05)
    resumed = case.build(seed=5)
    resumed.set_state(target.get_state())
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert resumed.scheduler.last_epoch == target.scheduler.last_epoch == 8


@pytest.mark.parametrize(("steps", "big_batch", "micro", "k"), [
    (4, 16, 8, 2),  # iterations of 4 optimiser steps
    (None, 40, 8, 5),  # whole epochs of 96: the last step has 2 of 5 micro-batches (16 samples)
])
def test_gradient_accumulation_matches_the_larger_batch(steps: int | None, big_batch: int,
                                                        micro: int, k: int,
                                                        one_thread: None) -> None:
    big = Case(ScheduledAdam, {"steps_per_iteration": steps}).build(
        seed=0, batch_size=big_batch, dropout=0.0)
    small = Case(ScheduledAdam, {"steps_per_iteration": steps, "accumulation_steps": k}).build(
        seed=0, batch_size=micro, dropout=0.0)
    for _ in range(3):
        assert big.train(1)["loss"] == pytest.approx(small.train(1)["loss"], rel=1e-5)
    assert big.scheduler.last_epoch == small.scheduler.last_epoch  # same optimiser steps
    for key, value in _params(big).items():
        torch.testing.assert_close(value, _params(small)[key], rtol=1e-5, atol=1e-6)


def test_trials_sharing_a_process_do_not_share_randomness(one_thread: None) -> None:
    """Dropout draws from torch's global generator: each trial owns it while it runs, so a trial's
    results do not depend on which trials ran before it, and the process's stream is untouched."""
    case = Case(ScheduledAdam, {})
    alone = case.build(seed=0, dropout=0.5)
    expected = [alone.train(1) for _ in range(2)]
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    a, b = case.build(seed=0, dropout=0.5), case.build(seed=1, dropout=0.5)
    got = [a.train(1), b.train(1), b.train(1), a.train(1)]
    assert [got[0], got[3]] == expected
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_keeps_its_scaler_state(precision: str,
                                                           one_thread: None) -> None:
    data = ScheduledAdam.load_data({})
    w = ScheduledAdam({}, data=data, seed=0, precision=precision)
    assert math.isfinite(w.train(2)["loss"])
    state = w.get_state()
    assert bool(state["scaler"]) == (precision == "fp16")  # the fp16 loss scale travels
    twin = ScheduledAdam({}, data=data, seed=3, precision=precision)
    twin.set_state(state)
    assert twin.train(1) == w.train(1)


def test_user_mistakes_are_one_line_errors(one_thread: None) -> None:
    data = ScheduledAdam.load_data({})

    class NoModule(ScheduledAdam):
        def build_model(self, options: Any) -> Any:
            return "a string"

    class NoGrad(ScheduledAdam):
        def train_step(self, batch: Any) -> Any:
            return torch.tensor(1.0)

    with pytest.raises(UserError, match="build_model must return a Module or a dict of them"):
        NoModule({}, data=data)
    with pytest.raises(UserError, match=r"load_data must return a dict with \['train_x'"):
        ScheduledAdam({}, data={"x": data["train_x"]})
    with pytest.raises(UserError, match="option steps_per_iteration must be an integer >= 1"):
        ScheduledAdam({}, data=data, options={"steps_per_iteration": 0})
    with pytest.raises(UserError, match=r"unknown options \['nope'\]"):
        ScheduledAdam({}, data=data, options={"nope": 1})
    with pytest.raises(UserError, match="precision 'fp8' is not one of"):
        ScheduledAdam({}, data=data, precision="fp8")
    with pytest.raises(TypeError, match="loss as a tensor that requires grad"):
        NoGrad({}, data=data).train(1)

    class WordyMetric(ScheduledAdam):
        def eval_step(self, batch: Any) -> Any:
            return {"loss": 0.5, "accuracy": "high"}

    with pytest.raises(TypeError, match="metric 'accuracy' is a str; return a number"):
        WordyMetric({}, data=data).evaluate()
    with pytest.raises(KeyError, match="unknown hyperparameters"):
        ScheduledAdam({}, data=data).apply_hyperparameters({"momentum": 0.9})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        ScheduledAdam({}, data=data).apply_hyperparameters({"batch_size": 0})
