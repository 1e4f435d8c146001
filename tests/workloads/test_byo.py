"""Bring your own workload: the example loads by path and trains; broken classes fail clearly."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest

from pbtune.errors import UserError
from pbtune.workloads import registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_workload.py"


def test_example_loads_through_the_registry_and_trains(one_thread) -> None:
    cls = registry.get(f"{EXAMPLE}:MyWorkload")
    assert cls.__name__ == "MyWorkload" and cls.default_metric == "accuracy"
    data = cls.load_data({})
    for array in data.values():
        array.flags.writeable = False  # as shared through the object store
    workload = registry.create(f"{EXAMPLE}:MyWorkload", {"lr": 0.05}, data=data, seed=0)
    first = workload.train(1)["loss"]
    last = workload.train(4)["loss"]
    metrics = workload.evaluate()
    assert math.isfinite(first) and last < first
    assert metrics["accuracy"] > 0.8  # breast-cancer is easy: a sanity floor, not a benchmark

    twin = cls({}, data=data, seed=9)
    twin.set_state(pickle.loads(pickle.dumps(workload.get_state())))
    assert twin.evaluate() == metrics and twin.iteration == 5
    optimizer = workload.optimizer
    workload.apply_hyperparameters({"lr": 0.01, "batch_size": 16})
    assert workload.optimizer is optimizer and optimizer.param_groups[0]["lr"] == 0.01


def test_relative_spec_is_made_absolute_for_ray_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLE.parents[1])
    spec = registry.canonical_spec("examples/my_workload.py:MyWorkload")
    assert spec == f"{EXAMPLE}:MyWorkload"
    assert registry.get("examples/my_workload.py:MyWorkload").__name__ == "MyWorkload"


def test_broken_class_names_the_missing_method(tmp_path: Path) -> None:
    source = EXAMPLE.read_text().replace("    def build_model(", "    def build_model_typo(")
    broken = tmp_path / "broken_workload.py"
    broken.write_text(source)
    with pytest.raises(UserError, match=r"missing build_model \(see pbtune\.workloads\.base"):
        registry.get(f"{broken}:MyWorkload")
    with pytest.raises(UserError, match="has no class 'Nope'"):
        registry.get(f"{EXAMPLE}:Nope")
