"""The Tune engine's pure parts: domain conversion, PB2 bounds, clipping, optional-package errors.

No Ray instance is started (``ray.tune`` is imported for its domain classes only).
"""

from __future__ import annotations

import json

import pytest

from pbtune.config import load_config, resolve
from pbtune.errors import UserError

tune = pytest.importorskip("ray.tune")

from pbtune.engines.tune import schedulers, space  # noqa: E402


def toy_cfg(**overrides):
    sets = {"workload": "pbt-toy", "engine": "tune", "population": 4,
            "stop.max_iterations": 4, "pbt.perturbation_interval": 2}
    sets.update(overrides)
    return resolve(load_config(None, [f"{k}={json.dumps(v)}" for k, v in sets.items()], env={}))


def test_param_space_converts_every_domain_and_lists_become_choices():
    converted = space.param_space({
        "lr": {"loguniform": [1e-4, 1e-1]}, "m": {"uniform": [0.5, 0.9]},
        "q": {"quniform": [0.0, 1.0, 0.25]}, "n": {"randint": [1, 8]},
        "act": ["relu", "tanh"], "batch": 64, "nested": {"wd": {"loguniform": [1e-6, 1e-3]}},
    })
    assert isinstance(converted["lr"], tune.search.sample.Float)
    assert converted["lr"].lower == pytest.approx(1e-4)
    assert isinstance(converted["n"], tune.search.sample.Integer)
    assert isinstance(converted["act"], tune.search.sample.Categorical)
    assert converted["batch"] == 64
    assert isinstance(converted["nested"]["wd"], tune.search.sample.Float)
    assert converted["q"].sample() in (0.0, 0.25, 0.5, 0.75, 1.0)


def test_mutations_keep_lists_as_ordered_categoricals():
    converted = space.mutations({"act": ["relu", "tanh"], "lr": {"uniform": [0.0, 1.0]}})
    assert converted["act"] == ["relu", "tanh"]
    assert isinstance(converted["lr"], tune.search.sample.Float)


def test_pb2_bounds_are_numeric_ranges_and_categoricals_are_refused():
    assert space.pb2_bounds({"h0": {"uniform": [0.0, 1.0]}}) == {"h0": [0.0, 1.0]}
    with pytest.raises(UserError, match=r"pb2 explores numeric ranges only.*act"):
        space.pb2_bounds({"act": ["relu", "tanh"]})


def test_clipping_explore_keeps_perturbed_values_in_their_domain():
    explore = space.clipping_explore({"h0": {"uniform": [0.0, 1.0]}}, None, clip=True)
    assert explore({"h0": 1.2, "other": 5}) == {"h0": 1.0, "other": 5}
    assert space.clipping_explore({"h0": {"uniform": [0.0, 1.0]}}, None, clip=False) is None


def test_pb2_without_gpy_says_how_to_install(monkeypatch):
    real = schedulers._available
    monkeypatch.setattr(schedulers, "_available", lambda m: m != "GPy" and real(m))
    with pytest.raises(UserError, match=r"needs the optional package GPy.*pbtune\[tune-extras\]"):
        schedulers.make_scheduler(toy_cfg(**{"tune.scheduler": "pb2"}))


def test_optuna_missing_or_with_pbt_is_a_clear_error(monkeypatch):
    with pytest.raises(UserError, match=r"optuna cannot drive tune\.scheduler=pbt"):
        schedulers.make_search(toy_cfg(**{"tune.search": "optuna"}), [])
    monkeypatch.setattr(schedulers, "_available", lambda m: False)
    with pytest.raises(UserError, match=r"needs the optional package optuna"):
        schedulers.make_search(
            toy_cfg(**{"tune.search": "optuna", "tune.scheduler": "asha"}), [])


def test_each_scheduler_name_builds_tunes_class():
    names = {"pbt": "LoggedPBT", "asha": "AsyncHyperBandScheduler",
             "hyperband": "HyperBandScheduler", "fifo": "FIFOScheduler"}
    for name, cls in names.items():
        sched = schedulers.make_scheduler(toy_cfg(**{"tune.scheduler": name}))
        assert type(sched).__name__ == cls
    pbt = schedulers.make_scheduler(toy_cfg(**{"pbt.perturbation_interval": 3}))
    assert pbt._perturbation_interval == 3 and pbt._time_attr == "training_iteration"


def test_toy_pbt_combines_progress_that_no_fixed_h_makes():
    """The paper's point: h=(1,0) and h=(0,1) each fix one coordinate; θ copied across both
    (what PBT's exploit does) beats either member alone after the same number of steps."""
    from pbtune.workloads import get

    cls = get("pbt-toy")
    a, b = cls({"h0": 1.0, "h1": 0.0}), cls({"h0": 0.0, "h1": 1.0})
    a.train(10)
    b.train(10)
    mixed = cls({"h0": 0.0, "h1": 1.0})
    mixed.set_state(a.get_state())
    mixed.apply_hyperparameters({"h0": 0.0, "h1": 1.0})
    mixed.train(10)
    a.train(10)
    b.train(10)
    assert mixed.evaluate()["score"] > max(a.evaluate()["score"], b.evaluate()["score"])
    assert a.evaluate()["score"] <= 1.2 - 0.81 + 1e-9  # θ₁ never moved under h₁ = 0
