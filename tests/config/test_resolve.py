"""resolve: checks against the workload, defaults filled in, and the real quickstart preset."""

from __future__ import annotations

import importlib.util

import pytest

from pbtune.config import dump_yaml, load_config, resolve
from pbtune.errors import UserError
from tests.config.fake_workload import FAKE


def fake(*overrides: str):
    return load_config(None, [f"workload={FAKE}", *overrides], env={})


def test_fills_metric_mode_and_merges_workload_defaults(fake_workload):
    cfg = resolve(fake("options.width=16", "param_space.lr=0.05",
                       "pbt.hyperparam_mutations.depth=[2, 4]"))
    assert (cfg.metric, cfg.mode) == ("score", "max")
    assert cfg.options == {"width": 16, "data_dir": None}
    assert cfg.param_space == {"lr": 0.05, "depth": 2}
    # Mutations are what the config lists, not merged with the workload's (issue 14 item 11).
    assert cfg.pbt.hyperparam_mutations == {"depth": [2, 4]}
    assert resolve(cfg) == cfg  # idempotent: the CLI may resolve a resolved config


def test_mutations_default_to_the_workloads_when_none_are_listed(fake_workload):
    assert resolve(fake()).pbt.hyperparam_mutations == {"lr": {"loguniform": [1e-3, 1e-1]},
                                                        "depth": [1, 2, 3]}


def test_mode_follows_the_chosen_metric_unless_given(fake_workload):
    assert resolve(fake("metric=loss")).mode == "min"
    assert resolve(fake("metric=loss", "mode=max")).mode == "max"


def test_null_mutation_removes_a_default_one(fake_workload):
    cfg = resolve(fake("pbt.hyperparam_mutations.depth=null"))
    assert cfg.pbt.hyperparam_mutations == {"lr": {"loguniform": [1e-3, 1e-1]}}


def test_custom_explore_fn_is_imported(fake_workload):
    path = "tests.config.fake_workload:explore_identity"
    assert resolve(fake(f"pbt.custom_explore_fn={path}")).pbt.custom_explore_fn == path


def test_resolved_config_round_trips(fake_workload, tmp_path):
    cfg = resolve(fake("param_space.lr={loguniform: [1e-4, 0.1]}"))
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path, env={}) == cfg


BAD = [
    (["workload=no-such-workload"], ["unknown workload 'no-such-workload'", FAKE, "digits-cnn"]),
    (["metric=acc"], [f"metric 'acc' is not reported by workload {FAKE}; valid: score, loss"]),
    (["param_space.lr2=0.1"], [f"param_space key 'lr2' is not a hyperparameter of {FAKE}",
                               "did you mean 'lr'", "valid: lr, depth"]),
    (["pbt.hyperparam_mutations.lr2=[1, 2]"],
     [f"pbt.hyperparam_mutations key 'lr2' is not a hyperparameter of {FAKE}", "valid: lr, depth"]),
    (["options.widht=3"], ["options key 'widht'", "did you mean 'width'", "data_dir"]),
    (["param_space.lr={loguniform: [0, 0.1]}"],
     ["param_space.lr: loguniform needs 0 < lower < upper"]),
    (["pbt.hyperparam_mutations.lr={logunifrom: [0.1, 1]}"],
     ["pbt.hyperparam_mutations.lr", "unknown domain 'logunifrom'", "'loguniform'"]),
    (["pbt.custom_explore_fn=no_such_module_xyz:explore"],
     ["pbt.custom_explore_fn", "no_such_module_xyz"]),
    (["pbt.hyperparam_mutations={lr: null, depth: null}"], ["nothing to explore", "pbt.enabled"]),
]


@pytest.mark.parametrize(("overrides", "needles"), BAD)
def test_bad_against_workload_is_one_line_user_error(fake_workload, overrides, needles):
    cfg = fake(*overrides)
    with pytest.raises(UserError) as info:
        resolve(cfg)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_random_search_needs_no_mutations(fake_workload):
    cfg = resolve(fake("pbt.enabled=false", "pbt.hyperparam_mutations={lr: null, depth: null}"))
    assert cfg.pbt.hyperparam_mutations == {}


@pytest.mark.skipif(
    importlib.util.find_spec("pbtune.workloads.digits") is None,
    reason="pbtune.workloads.digits (digits-cnn) is not written yet",
)
def test_quickstart_preset_resolves_against_digits_cnn():
    cfg = resolve(load_config(None, env={}))
    assert (cfg.workload, cfg.metric, cfg.mode) == ("digits-cnn", "accuracy", "max")
    assert set(cfg.param_space) == {"lr", "momentum", "weight_decay", "batch_size"}
    assert cfg.options["width"] == 16  # digits-cnn's default_options filled in
    assert cfg.pbt.perturbation_interval <= cfg.stop.max_iterations


@pytest.mark.parametrize("overrides,words", [
    (["param_space.lr=-0.1"], ["trial t000's sampled config cannot train", "lr = -0.1",
                               "finite number >= 0", "check param_space"]),
    (["pbt.hyperparam_mutations.lr={uniform: [-1, -0.5]}"],
     ["an explored config cannot train", "lr = -", "check pbt.hyperparam_mutations"]),
    (["pbt.custom_explore_fn=tests.config.fake_workload:explore_raises"],
     ["exploring the initial population fails", "RuntimeError", "custom_explore_fn"]),
    (["pbt.custom_explore_fn=tests.config.fake_workload:explore_not_a_dict"],
     ["custom_explore_fn", "dict"]),
    (["pbt.hyperparam_mutations.lr=0.01"], ["lr: 0.01 is a constant", "give a domain"]),
    (["pbt.hyperparam_mutations.lr={gaussian: [0, 1]}"],
     ["lr: {gaussian: ...} is not a domain", "loguniform", "not a nested mapping"]),
    (["param_space.lr=fast"], ["lr: cannot multiply the non-numeric value 'fast'"]),
])
def test_values_no_trial_can_train_with_are_refused_before_anything_starts(
        fake_workload, overrides, words):
    """Issue 14 items 8 and 10: found at config time, not when every trial has errored."""
    with pytest.raises(UserError) as err:
        resolve(fake(*overrides))
    for word in words:
        assert word in str(err.value)
