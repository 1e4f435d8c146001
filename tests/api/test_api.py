"""The Python API (issue 17, first part): run, load, resume and Result from Python, errors as
typed exceptions with the CLI's one-line messages."""

from __future__ import annotations

import pytest

import pbtune
from pbtune.errors import ConfigError, UserError
from tests.engines.toy_workload import Counter

pytestmark = pytest.mark.ray

SMALL = {"population": 4, "stop.max_iterations": 4, "pbt.perturbation_interval": 2,
         "stop.metric_threshold": None, "resources.slots": 2}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    import os

    import ray

    from tests.conftest import REPO

    if not ray.is_initialized():  # as the ray_local fixture: workers import tests.* modules
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return pbtune.run(workload=Counter, overrides={**SMALL, "param_space": {
        "lr": {"uniform": [0.0, 1.0]}}}, results_dir=tmp_path_factory.mktemp("api"),
        progress=False, plots=False)


def test_run_returns_a_result_over_its_files(result):
    assert isinstance(result, pbtune.Result)
    assert result.summary["iterations"] == 16
    frame = result.trials
    assert len(frame) == 16 and set(frame["trial_id"]) == {"t000", "t001", "t002", "t003"}
    assert list(result.exploits.columns) == ["target", "donor", "target_iteration",
                                             "donor_iteration", "old_config", "new_config"]
    assert len(result.exploits) == result.summary["exploits"] > 0
    best = result.best()
    assert best == {**best, "metric": frame["score"].max()}
    assert set(best) == {"trial_id", "metric", "config", "iteration"}
    last = result.best("last")
    finals = frame.sort_values("iteration").groupby("trial_id").tail(1)
    assert last["metric"] == finals["score"].max() and last["iteration"] == 4
    assert best["metric"] == result.summary["best"]["metric"]
    state = result.best_state()
    assert state["iteration"] == best["iteration"]
    with pytest.raises(ValueError, match="scope"):
        result.best("first")


def test_plots_are_figures(result):
    from matplotlib.figure import Figure

    for fig in (result.plot_metric(), result.plot_schedules(), result.plot_lineage()):
        assert isinstance(fig, Figure) and fig.axes


def test_load_reads_the_same_run(result):
    again = pbtune.load(result.run_dir)
    assert again.summary == result.summary
    assert again.best() == result.best()
    with pytest.raises(UserError, match="does not exist"):
        pbtune.load(result.run_dir / "nope")


def test_resume_of_a_finished_run_returns_its_result(result, capsys):
    again = pbtune.resume(result.run_dir, progress=False)
    assert "already finished" in capsys.readouterr().out
    assert again.best() == result.best()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"overrides": {"population": 0}}, r"population = 0"),
    ({"overrides": {"no_such_key": 1}}, r"unknown config key 'no_such_key'"),
    ({"config_or_path": {"populaton": 3}}, r"'populaton' \(from the config mapping\)"),
    ({"config_or_path": 3}, r"config must be a path, a mapping"),
    ({"workload": 3}, r"workload must be a name"),
])
def test_mistakes_raise_config_errors_with_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        pbtune.experiment_config(**kwargs)
    assert "\n" not in str(info.value) and "/tmp" not in str(info.value)


def test_a_workload_class_from___main___is_refused_with_the_fix():
    local = type("Local", (Counter,), {"__module__": "__main__"})
    with pytest.raises(ConfigError, match="define it in a module"):
        pbtune.experiment_config(workload=local)


def test_a_config_mapping_and_a_path_give_the_same_config(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("workload: pbt-toy\npopulation: 6\n")
    from_mapping = pbtune.experiment_config({"workload": "pbt-toy", "population": 6})
    assert pbtune.experiment_config(path) == from_mapping
    built = pbtune.experiment_config({"workload": "pbt-toy"})
    assert pbtune.experiment_config(built, overrides={"population": 6}).population == 6


def test_the_api_names_stay_functions_after_every_module_is_imported():
    """A submodule named like a function (``api/resume.py`` and ``resume``) replaces the
    package attribute when it is imported later: ``pbtune.resume(...)`` then failed with
    "'module' object is not callable" (CI caught it; the CLI imports the modules first)."""
    import importlib
    import pkgutil

    import pbtune.api

    for info in pkgutil.iter_modules(pbtune.api.__path__):
        importlib.import_module(f"pbtune.api.{info.name}")
    importlib.import_module("pbtune.cli.resume")
    importlib.import_module("pbtune.cli.run")
    for name in ("run", "resume", "load", "experiment_config", "compare"):
        assert callable(getattr(pbtune, name)) and callable(getattr(pbtune.api, name)), name
        assert not isinstance(getattr(pbtune, name), type(pbtune)), name


def test_compare_runs_methods_on_one_budget_and_returns_a_table():
    frame = pbtune.compare(workload="pbt-toy", methods=("baseline", "random"), progress=False,
                           overrides={**SMALL, "population": 3})
    assert list(frame["method"]) == ["baseline", "random"]
    assert list(frame["iterations"]) == [4, 12]  # one default-config model vs the population
    assert (frame["exploits"] == 0).all() and (frame["errors"] == 0).all()
    assert frame.attrs["metric"] == "score" and "baseline" in frame.attrs["median"]
    with pytest.raises(ConfigError, match="valid methods are"):
        pbtune.compare(methods=("pbt-but-faster",))


def test_compare_with_results_dir_keeps_every_run_loadable(tmp_path):
    frame = pbtune.compare(workload="pbt-toy", methods=("baseline", "native-pbt"), progress=False,
                           overrides={**SMALL, "population": 3}, results_dir=tmp_path)
    assert list(frame["method"]) == ["baseline", "native-pbt"]
    for row in frame.itertuples():
        run = pbtune.load(row.run_dir)
        assert run.run_dir.parent.name == f"quickstart-{row.method}"
        assert run.summary["best"]["metric"] == row.best
        assert len(run.trials) == row.iterations  # every iteration's row is on disk
    assert len(pbtune.load(frame["run_dir"][1]).exploits) == frame["exploits"][1]


def test_method_configs_for_the_notebook_comparison():
    from pbtune.engines.bench import method_config

    cfg = pbtune.experiment_config(workload="pbt-toy", overrides=SMALL)
    base = method_config(cfg, "baseline", seed=0)
    assert (base.population, base.pbt.enabled, base.param_space) == (1, False,
                                                                       {"h0": 0.5, "h1": 0.5})
    asha = method_config(cfg, "asha", seed=0)
    assert (asha.engine, asha.tune.scheduler, asha.population) == ("tune", "asha", 4)


def test_best_config_values_are_plain_python_with_integers_kept(result, tmp_path):
    """pandas reads an integer column with one empty cell as float64: best() must still give
    ``64`` (int), not numpy's ``64.0``, and plain floats, not numpy scalars."""
    import shutil

    import pandas as pd

    copy = tmp_path / "run"
    shutil.copytree(result.run_dir, copy)
    frame = pd.read_csv(copy / "trials.csv")
    best = frame["score"].idxmax()  # the gap: a first-iteration row (never a final one)
    empty = next(i for i in range(len(frame)) if i != best and frame.loc[i, "iteration"] == 1)
    frame["config/batch_size"] = pd.array([None if i == empty else 64 for i in range(len(frame))],
                                          dtype="Int64")  # written as 64, the gap as empty
    frame.to_csv(copy / "trials.csv", index=False)
    assert pbtune.load(copy).trials["config/batch_size"].dtype == float  # the trap
    for scope in ("all", "last"):
        config = pbtune.load(copy).best(scope)["config"]
        assert type(config["lr"]) is float, scope
        assert type(config["batch_size"]) is int and config["batch_size"] == 64, scope
