"""``hf-qa`` on a real BLOOM architecture at toy size (tests/workloads/fixtures_hf.py): SQuAD
preprocessing and the official metrics on known answers, exploit of weights, optimiser,
scheduler and scaler, and an explored lr that survives the restored scheduler."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from pbtune.errors import UserError
from pbtune.workloads import get, squad
from pbtune.workloads.hf_qa import LinearWarmup
from tests.workloads.fixtures_hf import write_toy_bloom


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[dict, dict]:
    options = write_toy_bloom(tmp_path_factory.mktemp("hf"))
    return options, get("hf-qa").load_data(options)


def _build(toy, seed: int = 0, **config):
    options, data = toy
    return get("hf-qa")(config, data=data, options=options, seed=seed)


def test_answer_positions_point_at_the_answer_text(toy) -> None:
    options, data = toy
    examples = squad.read_squad(Path(options["data_dir"]) / "train-v1.1.json")
    inside = 0
    for i, (s, e) in enumerate(zip(data["train_start_positions"], data["train_end_positions"],
                                   strict=True)):
        if s == 0:  # this window lacks the whole answer
            continue
        example = examples[int(data["train_example_index"][i])]
        offsets = data["train_offsets"][i]
        text = example["context"][offsets[s][0]:offsets[e][1]]
        assert text.strip() == example["answers"]["text"][0]
        inside += 1
    assert inside >= len(examples)  # every answer is in at least one window


def test_gold_logits_give_full_marks_and_the_official_normalisation(toy) -> None:
    options, data = toy
    examples = squad.read_squad(Path(options["data_dir"]) / "dev-v1.1.json")
    feats = {k: data[f"eval_{k}"] for k in ("example_index", "offsets")}
    n, length = data["eval_input_ids"].shape
    start, end = np.zeros((n, length)), np.zeros((n, length))
    start[np.arange(n), data["eval_start_positions"]] = 10.0
    end[np.arange(n), data["eval_end_positions"]] = 10.0
    predicted = squad.predictions(start, end, feats, examples)
    assert [p.strip() for p in predicted] == [e["answers"]["text"][0] for e in examples]
    assert squad.squad_metrics(predicted, examples) == {"exact_match": 100.0, "f1": 100.0}
    assert squad.normalize_answer("  The Cat,  sat!") == "cat sat"
    assert squad.f1_score("the big cat", "a cat") == pytest.approx(2 / 3)


def test_exploit_copies_weights_optimizer_and_schedule_and_the_explored_lr_wins(toy) -> None:
    donor, target = _build(toy, 0, lr=1e-4), _build(toy, 1, lr=2e-5)
    donor.train(1)  # 3 steps: the schedule's step count is 3
    target.set_state(donor.get_state(), include_rng=False)
    for (name, a), b in zip(donor.model.state_dict().items(),
                            target.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert target.scheduler.last_epoch == donor.scheduler.last_epoch == 3
    assert target.optimizer.state_dict()["state"].keys() == donor.optimizer.state_dict()[
        "state"].keys()
    target.apply_hyperparameters({"lr": 5e-5, "per_device_bs": 1})  # explore, after exploit
    target.train(1)  # 3 more steps
    factor = LinearWarmup(target.warmup.total, 0.0)(6)
    assert target.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5 * factor)
    assert target.batch_size == 1 and target.scheduler.base_lrs == [5e-5]


def test_warmup_ratio_is_read_by_the_schedule(toy) -> None:
    w = _build(toy, warmup_ratio=0.5)
    assert w.warmup.ratio == 0.5 and w.optimizer.param_groups[0]["lr"] < 5e-5  # warming up
    w.apply_hyperparameters({"warmup_ratio": 0.0})
    w.train(1)
    assert w.optimizer.param_groups[0]["lr"] == pytest.approx(
        5e-5 * LinearWarmup(w.warmup.total, 0.0)(3))


def test_fp16_keeps_its_loss_scale_in_the_state(toy) -> None:
    options, data = toy
    w = get("hf-qa")({}, data=data, options=options, seed=0, precision="fp16")
    assert math.isfinite(w.train(1)["loss"])
    assert w.get_state()["scaler"]["scale"] > 0


def test_missing_files_are_named(toy, tmp_path: Path) -> None:
    options, _ = toy
    with pytest.raises(UserError, match=r"SQuAD file .*train-v1\.1\.json not found"):
        get("hf-qa").load_data({**options, "data_dir": str(tmp_path)})
    with pytest.raises(UserError, match="cannot load the tokenizer of"):
        get("hf-qa").load_data({**options, "model": str(tmp_path / "no-model")})


@pytest.mark.parametrize("preset", ["bloom-squad", "bloom-squad-cpu"])
def test_presets_load_with_the_originals_search(preset: str) -> None:
    import pbtune
    from tests.conftest import REPO

    cfg = pbtune.experiment_config(str(Path(REPO) / "configs" / f"{preset}.yaml"))
    assert (cfg.workload, cfg.metric, cfg.mode) == ("hf-qa", "eval_loss", "min")
    assert set(cfg.pbt.hyperparam_mutations) == {"lr", "per_device_bs", "weight_decay"}
    assert cfg.pbt.perturbation_interval == 1
    if preset == "bloom-squad":
        assert (cfg.options["train_samples"], cfg.options["eval_samples"]) == (1000, 100)
        assert cfg.resources.precision.gpu == "fp16"
