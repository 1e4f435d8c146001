"""The DCGAN workloads and the inception score (issue 18).

The score's meaning is checked with the real classifier recipe (trained once here, on digits):
held-out real digits score near the number of classes times the classifier's confidence,
constant or noise images near 1. The GAN's exploit and explore are checked on both networks and
both optimisers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pbtune.errors import UserError
from pbtune.workloads import get, inception
from pbtune.workloads.gan_models import to_unit
from tests.workloads.fixtures_gan import TINY


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("classifier-cache")


@pytest.fixture(scope="module")
def digits(cache: Path) -> dict[str, np.ndarray]:
    """dcgan-digits data with the default classifier recipe (30 epochs, >= 0.95 required)."""
    return get("dcgan-digits").load_data({"cache_dir": str(cache)})


def _classifier(data: dict[str, np.ndarray]) -> torch.nn.Module:
    return inception.build_classifier({k[11:]: v for k, v in data.items()
                                       if k.startswith("classifier/")})


def test_real_held_out_images_score_high_and_degenerate_images_near_one(digits) -> None:
    classifier = _classifier(digits)
    real = to_unit(torch.from_numpy(digits["test_x"]))
    probs = inception.class_probabilities(classifier, real)
    confidence = float(probs.max(1).values.mean())
    accuracy = float((probs.argmax(1) == torch.from_numpy(digits["test_y"])).double().mean())
    assert accuracy >= 0.95 and confidence > 0.9
    whole, _ = inception.inception_score(probs, splits=1)
    assert 0.8 * 10 * confidence < whole <= 10.0  # near classes × confidence
    split_mean, split_std = inception.inception_score(probs, splits=10)  # 36 images a part
    assert 6.0 < split_mean <= whole and split_std > 0
    constant = torch.full((360, 1, 32, 32), 0.3)
    score, _ = inception.inception_score(inception.class_probabilities(classifier, constant))
    assert score == pytest.approx(1.0, abs=1e-6)  # every sample the same prediction
    for low in (-1.0, 0.0):  # uniform noise over the full range, and bright noise
        noise = torch.rand(360, 1, 32, 32, generator=torch.Generator().manual_seed(5))
        noise = noise * (1.0 - low) + low
        score, _ = inception.inception_score(inception.class_probabilities(classifier, noise))
        assert 1.0 <= score < 1.1, low  # the "not a digit" class takes them all
    with pytest.raises(ValueError, match="N >= splits"):
        inception.inception_score(probs[:5], splits=10)


def _gan(data, seed: int = 0, **config):
    return get("dcgan-digits")(config, data=data, options={**TINY, "cache_dir": None}, seed=seed)


def test_exploit_copies_both_networks_both_optimizers_and_the_step(digits) -> None:
    donor, target = _gan(digits, 0, lr_g=1e-3), _gan(digits, 1, lr_g=5e-4)
    donor.train(3)
    target.train(1)
    target.set_state(donor.get_state(), include_rng=False)
    for name in ("generator", "discriminator"):
        for (key, a), b in zip(donor.models[name].state_dict().items(),
                               target.models[name].state_dict().values(), strict=True):
            assert torch.equal(a, b), (name, key)  # weights and BatchNorm running stats
        da, ta = donor.optimizers[name].state_dict(), target.optimizers[name].state_dict()
        assert da["param_groups"] == ta["param_groups"]
        for pid, entry in da["state"].items():
            for key, value in entry.items():
                assert torch.equal(value, ta["state"][pid][key]), (name, key)  # Adam moments
    assert target.iteration == donor.iteration == 3
    assert target.evaluate() == donor.evaluate()  # same weights, same fixed noise


def test_explored_learning_rates_are_set_in_their_own_optimizer_in_place(digits) -> None:
    gan = _gan(digits)
    gan.train(1)
    before = {k: id(v) for k, v in gan.optimizers.items()}
    gan.apply_hyperparameters({"lr_g": 3e-3, "lr_d": 4e-5, "beta1": 0.3})
    g, d = gan.optimizers["generator"], gan.optimizers["discriminator"]
    assert [grp["lr"] for grp in g.param_groups] == [3e-3]
    assert [grp["lr"] for grp in d.param_groups] == [4e-5]
    assert g.param_groups[0]["betas"] == d.param_groups[0]["betas"] == (0.3, 0.999)
    assert {k: id(v) for k, v in gan.optimizers.items()} == before and g.state  # moments kept
    result = gan.train(1)
    assert {"loss", "loss_d", "loss_g"} <= set(result) and math.isfinite(result["loss"])


def test_evaluation_scores_fixed_noise_and_leaves_a_sample_grid(digits) -> None:
    a, b = _gan(digits, 0), _gan(digits, 7)
    assert torch.equal(a.noise, b.noise)  # every trial is scored on the same noise
    metrics = a.evaluate()
    assert set(metrics) >= {"inception_score", "loss_g", "loss_d"}
    assert 1.0 <= metrics["inception_score"] <= 10.0
    assert a.evaluate() == metrics  # eval mode, no randomness: the same score twice
    grid = a.artifacts()["samples"]
    assert grid.dtype == np.uint8 and grid.shape == (4 * 32 + 5 * 2,) * 2  # 4×4, 2-px gaps


def test_classifier_is_cached_retrained_when_damaged_and_checked(cache: Path, digits,
                                                                 capsys) -> None:
    cls = get("dcgan-digits")
    cls.load_data({"cache_dir": str(cache)})  # the recipe the `digits` fixture trained
    assert "(cached;" in capsys.readouterr().out
    quick = {"cache_dir": str(cache / "quick"), "classifier_epochs": 1,
             "min_classifier_accuracy": 0.0}
    first = cls.load_data(quick)
    assert "(trained now;" in capsys.readouterr().out
    for path in (cache / "quick").glob("classifier-*.npz"):
        path.write_bytes(b"garbage")  # a torn write or a stranger's file
    again = cls.load_data(quick)
    assert "(trained now;" in capsys.readouterr().out
    assert all(np.array_equal(first[k], again[k]) for k in first)  # a deterministic recipe
    with pytest.raises(UserError, match=r"classifier reached only 0\.\d+ test accuracy \(< 0\.999"):
        cls.load_data({**quick, "min_classifier_accuracy": 0.999})


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    cls = get("dcgan-mnist")
    with pytest.raises(UserError, match=r"MNIST not found: place train-images-idx3-ubyte\.gz in "):
        cls.load_data({"data_dir": str(tmp_path), "download": False})
    with pytest.raises(UserError, match="grid must be a square number"):
        cls.resolve_options({"grid": 10})
    with pytest.raises(UserError, match=r"eval_samples .* must be at least twice eval_splits"):
        cls.resolve_options({"eval_samples": 10, "eval_splits": 10})
    with pytest.raises(UserError, match="option ngf must be an integer >= 1"):
        cls.resolve_options({"ngf": 0})


@pytest.mark.parametrize("preset", ["dcgan-digits", "dcgan-mnist"])
def test_presets_load_and_mnist_has_the_guides_settings(preset: str) -> None:
    import pbtune
    from tests.conftest import REPO

    cfg = pbtune.experiment_config(str(Path(REPO) / "configs" / f"{preset}.yaml"))
    assert cfg.workload == preset and cfg.metric == "inception_score" and cfg.mode == "max"
    assert set(cfg.pbt.hyperparam_mutations) == {"lr_g", "lr_d"}
    if preset == "dcgan-mnist":  # the guide: 8 trials, perturbation every 5 iterations
        assert (cfg.population, cfg.pbt.perturbation_interval) == (8, 5)
