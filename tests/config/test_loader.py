"""load_config: layering (defaults < file < env < --set), env nesting, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbtune.config import ExperimentConfig, dump_yaml, load_config
from pbtune.errors import UserError


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def user_error(*args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_config(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message == message.strip()
    return message


def test_precedence_file_env_set(tmp_path):
    path = write(tmp_path, "seed: 1\npopulation: 6\nstop: {max_iterations: 100}\n")
    env = {"PBTUNE_POPULATION": "7", "PBTUNE_STOP__MAX_ITERATIONS": "50"}
    cfg = load_config(path, ["population=9"], env=env)
    assert cfg.seed == 1  # file over default
    assert cfg.stop.max_iterations == 50  # env over file
    assert cfg.population == 9  # --set over env
    assert cfg.pbt.burn_in == 0 and cfg.checkpoint_interval == 50  # untouched defaults
    assert cfg.stop.metric_threshold == 0.8


def test_env_nesting_and_search_space_from_env(tmp_path):
    path = write(tmp_path, "param_space: {depth: 3}\n")
    env = {
        "PBTUNE_PARAM_SPACE__LR": "{loguniform: [1e-4, 0.1]}",
        "PBTUNE_PBT__HYPERPARAM_MUTATIONS__BATCH_SIZE": "[64, 128, 256]",
        "PBTUNE_RESOURCES__RESOURCE_ALLOCATION": "{10.0.0.1: {CPU: 4, GPU: 1}}",
        "PBTUNE_PBT__ENABLED": "false",
        "PBTUNE_RESULTS_DIR": "/tmp/elsewhere",  # read by the CLI, not a config key
        "OTHER": "ignored",
    }
    cfg = load_config(path, env=env)
    # 1e-4 is a number, not YAML 1.1's string "1e-4".
    assert cfg.param_space == {"depth": 3, "lr": {"loguniform": [1e-4, 0.1]}}
    assert cfg.pbt.hyperparam_mutations == {"batch_size": [64, 128, 256]}
    assert cfg.resources.resource_allocation == {"10.0.0.1": {"CPU": 4.0, "GPU": 1.0}}
    assert cfg.pbt.enabled is False


def test_env_parent_applied_before_child():
    env = {"PBTUNE_STOP__MAX_ITERATIONS": "7", "PBTUNE_STOP": "{time_budget_s: 60}"}
    cfg = load_config(None, env=env)
    assert cfg.stop.max_iterations == 7 and cfg.stop.time_budget_s == 60


def test_ray_address_fills_only_an_unset_address(tmp_path):
    env = {"RAY_ADDRESS": "10.0.0.1:6379"}
    assert load_config(None, env=env).resources.address == "10.0.0.1:6379"
    assert load_config(None, ["resources.address=auto"], env=env).resources.address == "auto"
    path = write(tmp_path, "resources: {address: 'head:6379'}\n")
    assert load_config(path, env=env).resources.address == "head:6379"
    assert load_config(None, env={}).resources.address is None


def test_set_values_are_yaml_and_mappings_replace():
    cfg = load_config(None, ["stop.metric_threshold=null", "param_space={lr: 0.1}",
                             "resources.address=ray://head:10001", "name=exp-1.b"], env={})
    assert cfg.stop.metric_threshold is None
    assert cfg.param_space == {"lr": 0.1}  # the preset's other keys are gone, not merged
    assert cfg.resources.address == "ray://head:10001"
    assert cfg.name == "exp-1.b"


def test_quickstart_preset_loads_with_its_values():
    cfg = load_config(None, env={})
    assert (cfg.name, cfg.workload, cfg.population) == ("quickstart", "digits-cnn", 8)
    assert cfg.pbt.perturbation_interval == 2 and cfg.stop.max_iterations == 16
    assert cfg.stop.metric_threshold is None and cfg.checkpoint_interval == 8
    assert cfg.param_space["lr"] == {"loguniform": [0.001, 0.3]}


def test_preset_drops_its_workload_specific_keys_when_workload_changes(tmp_path):
    cfg = load_config(None, ["workload=fake-config", "population=4"], env={})
    assert cfg.param_space == {} and cfg.options == {} and cfg.pbt.hyperparam_mutations == {}
    assert cfg.population == 4 and cfg.name == "quickstart"
    # Values given in the same call still apply; a user's own file is never edited.
    cfg = load_config(None, ["workload=fake-config", "param_space.lr=0.1"], env={})
    assert cfg.param_space == {"lr": 0.1}
    path = write(tmp_path, "workload: digits-cnn\nparam_space: {momentum: 0.9}\n")
    assert load_config(path, ["workload=fake-config"], env={}).param_space == {"momentum": 0.9}


def test_empty_file_is_all_defaults(tmp_path):
    assert load_config(write(tmp_path, ""), env={}) == ExperimentConfig()


def test_dump_yaml_round_trips(tmp_path):
    cfg = load_config(None, [
        "options={data_dir: '1e-4', width: 8}", "pbt.perturbation_factors=[1.5, 0.5]",
        "resources.resource_allocation={10.0.0.2: {CPU: 2}}", "stop.time_budget_s=3600",
        "param_space.weight_decay={loguniform: [1e-6, 1e-3]}", "mode=min",
    ], env={"RAY_ADDRESS": "head:6379"})
    path = write(tmp_path, dump_yaml(cfg), "dumped.yaml")
    again = load_config(path, env={})
    assert again == cfg
    assert again.options["data_dir"] == "1e-4"  # a string that looks like a float stays one


BAD_FILES = [
    ("a: [1, 2\nb: 3\n", ["exp.yaml", "invalid YAML", "line 2"]),
    ("- 1\n- 2\n", ["exp.yaml", "top level must be a mapping", "list"]),
    ("pbt:\n  quantile: 0.3\n", ["'pbt.quantile'", "did you mean 'pbt.quantile_fraction'",
                                 "config file", "exp.yaml", "resample_probability"]),
    ("perturbation_interval: 3\n", ["did you mean 'pbt.perturbation_interval'"]),
    ("stop: 5\n", ["stop = 5", "must be a mapping"]),
    ("pbt: {quantile_fraction: 0.7}\n", ["pbt.quantile_fraction = 0.7", "(0, 0.5]", "exp.yaml"]),
]


@pytest.mark.parametrize(("text", "needles"), BAD_FILES)
def test_bad_file_is_one_line_user_error(tmp_path, text, needles):
    message = user_error(write(tmp_path, text), env={})
    for needle in needles:
        assert needle in message, message


def test_missing_file(tmp_path):
    message = user_error(tmp_path / "foo.yaml", env={})
    assert "config file" in message and "foo.yaml not found" in message
    assert "is not a file" in user_error(tmp_path, env={})


BAD_SETS = [
    ("pbt.quantile_fraction=0.7", ["config error: pbt.quantile_fraction = 0.7", "(0, 0.5]",
                                   "--set pbt.quantile_fraction=0.7"]),
    ("pbt.quantile=0.3", ["unknown config key 'pbt.quantile'", "'pbt.quantile_fraction'?"]),
    ("population=abc", ["population = \"abc\"", "integer"]),
    ("population=true", ["population", "expected a number"]),
    ("population=0", ["population = 0", "greater than or equal to 1"]),
    ("population=1", ["population = 1", "at least 2", "pbt.enabled=false"]),
    ("pbt.perturbation_interval=17", ["pbt.perturbation_interval = 17", "stop.max_iterations = 16",
                                      "no perturbation would ever happen"]),
    ("pbt.burn_in=20", ["pbt.burn_in = 20", "no perturbation"]),
    ("pbt.burn_in=-1", ["pbt.burn_in = -1", "greater than or equal to 0"]),
    ("pbt.resample_probability=1.5", ["pbt.resample_probability = 1.5", "less than or equal"]),
    ("pbt.perturbation_factors=[1.2, 0]", ["pbt.perturbation_factors", "> 0"]),
    ("pbt.perturbation_factors=[1.2]", ["pbt.perturbation_factors = [1.2]", "two factors"]),
    ("mode=maximum", ["mode = \"maximum\"", "'max' or 'min'"]),
    ("scheduling=random", ["scheduling", "'affinity'", "'speed-aware'"]),
    ("engine=spark", ["engine", "'native' or 'tune'"]),
    ("name=../escape", ["name = \"../escape\"", "directory name"]),
    ("checkpoint_interval=0", ["checkpoint_interval = 0", "greater than 0"]),
    ("report_interval=-5", ["report_interval = -5", "greater than 0"]),
    ("stop.max_iterations=0", ["stop.max_iterations = 0", "greater than 0"]),
    ("stop.time_budget_s=0", ["stop.time_budget_s = 0", "greater than 0"]),
    ("stop.time_budget_s=.inf", ["stop.time_budget_s", "finite"]),
    ("resources.cpus_per_trial=0", ["resources.cpus_per_trial = 0", "greater than 0"]),
    ("resources.gpus_per_trial=-0.5", ["resources.gpus_per_trial", "greater than or equal to 0"]),
    ("resources.slots=0", ["resources.slots = 0", "greater than 0"]),
    ("resources.members_per_worker=0", ["resources.members_per_worker = 0",
                                        "greater than or equal to 1"]),
    ("resources.members_per_worker=2.5", ["resources.members_per_worker = 2.5", "fractional"]),
    ("resources.fuse=sometimes", ["resources.fuse", "'auto'", "'always'", "'never'"]),
    ("resources.resource_allocation={10.0.0.1: {MEM: 4}}", ["'MEM'", "CPU or GPU", "10.0.0.1"]),
    ("resources.resource_allocation={10.0.0.1: {CPU: -1}}", ["CPU = -1.0", ">= 0"]),
    ("workload=", ["workload", "valid string"]),
    ("pbt=5", ["pbt = 5", "must be a mapping"]),
    ("seed=1.5", ["seed = 1.5", "fractional part"]),
    ("nonsense", ["--set 'nonsense'", "KEY=VALUE"]),
    ("=5", ["--set '=5'", "KEY=VALUE"]),
    ("pbt..burn_in=3", ["--set 'pbt..burn_in=3'", "KEY=VALUE"]),
    ("param_space={lr: [1,", ["--set param_space", "invalid YAML"]),
]


BAD_COMBINATIONS = [
    (["resources.members_per_worker=4", "resources.workers_per_trial=2"],
     ["members_per_worker = 4 and workers_per_trial = 2", "set one of them to 1"]),
    (["resources.members_per_worker=4", "resources.state_on_worker=always"],
     ["members_per_worker = 4 needs state_on_worker: auto or never"]),
    (["resources.members_per_worker=4", "engine=tune"],
     ["resources.members_per_worker = 4 needs the native engine"]),
]


@pytest.mark.parametrize(("overrides", "needles"), BAD_COMBINATIONS)
def test_settings_that_cannot_go_together_are_one_line_user_errors(overrides, needles):
    message = user_error(None, overrides, env={})
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(("override", "needles"), BAD_SETS)
def test_bad_override_is_one_line_user_error(override, needles):
    message = user_error(None, [override], env={})
    for needle in needles:
        assert needle in message, message


BAD_ENVS = [
    ({"PBTUNE_STOP__MAX_ITERATION": "5"}, ["'stop.max_iteration'", "PBTUNE_STOP__MAX_ITERATION",
                                           "did you mean 'stop.max_iterations'"]),
    ({"PBTUNE_POPULATION": "[1, 2"}, ["environment variable PBTUNE_POPULATION", "invalid YAML"]),
    ({"PBTUNE_STOP__": "5"}, ["PBTUNE_STOP__", "empty key part"]),
    ({"PBTUNE_POPULATION": "many"}, ["population = \"many\"", "(from env PBTUNE_POPULATION)"]),
]


@pytest.mark.parametrize(("env", "needles"), BAD_ENVS)
def test_bad_env_is_one_line_user_error(env, needles):
    message = user_error(None, env=env)
    for needle in needles:
        assert needle in message, message


def test_population_one_is_fine_without_pbt():
    cfg = load_config(None, ["population=1", "pbt.enabled=false",
                             "pbt.perturbation_interval=100"], env={})
    assert cfg.population == 1 and not cfg.pbt.enabled


def test_a_key_given_twice_in_a_file_is_refused(tmp_path):
    """Issue 14 item 10: PyYAML kept the last of two `population:` lines without a word."""
    path = tmp_path / "dup.yaml"
    path.write_text("population: 4\nseed: 1\npbt:\n  burn_in: 2\n  burn_in: 4\n")
    with pytest.raises(UserError, match=r"line 5, column 3: .*'burn_in' is given twice"):
        load_config(path, env={})


def test_launch_script_variables_are_not_config():
    """Issue 15: the SLURM scripts export PBTUNE_SLURM_* for themselves; they must not be read
    as config keys, while a mistyped config key is still refused."""
    env = {"PBTUNE_SLURM_SHARED_DIR": "/scratch/pbt", "PBTUNE_SLURM_HEAD_IP": "10.0.0.1",
           "PBTUNE_POPULATION": "6"}
    assert load_config(None, env=env).population == 6
    with pytest.raises(UserError, match="shared_dir"):
        load_config(None, env={"PBTUNE_SHARED_DIR": "/scratch/pbt"})


def test_the_original_resource_allocation_layout_is_accepted_verbatim():
    """Issue 15: RESOURCE_ALLOCATION = {"CPU": {ip: n}, "GPU": {ip: n}} as the original scripts
    write it means the same as {ip: {CPU: n, GPU: m}}."""
    original = ('{"CPU": {"10.0.0.1": 16, "10.0.0.2": 12}, "GPU": {"10.0.0.3": 1}}')
    cfg = load_config(None, [f"resources.resource_allocation={original}"], env={})
    assert cfg.resources.resource_allocation == {
        "10.0.0.1": {"CPU": 16}, "10.0.0.2": {"CPU": 12}, "10.0.0.3": {"GPU": 1}}
    current = load_config(None, ['resources.resource_allocation={"10.0.0.1": {"CPU": 4}}'],
                          env={})
    assert current.resources.resource_allocation == {"10.0.0.1": {"CPU": 4}}
