"""``run_iteration``: the one train + evaluate + result row every engine shares (no Ray)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from pbtune.workloads import get
from pbtune.workloads.iteration import IterationResult, as_number, run_iteration
from tests.engines.toy_workload import Counter

BOOKKEEPING = ["iteration", "time_this_iter_s", "timestamp"]


class Scripted:
    """Returns given train / eval dicts: only what ``run_iteration`` touches of a workload."""

    def __init__(self, train: Mapping[str, Any], evaluate: Mapping[str, Any]) -> None:
        self._train, self._eval = dict(train), dict(evaluate)
        self.iteration = 0

    def train(self, iterations: int = 1) -> dict[str, Any]:
        self.iteration += iterations
        return dict(self._train)

    def evaluate(self) -> dict[str, Any]:
        return dict(self._eval)


def test_row_has_prefixed_train_metrics_then_eval_metrics_then_bookkeeping() -> None:
    counter = Counter({"lr": 0.25})
    step = run_iteration(counter, "score")
    assert isinstance(step, IterationResult)
    assert list(step.row) == ["train_loss", "score", "loss", *BOOKKEEPING]
    assert step.metrics == {k: v for k, v in step.row.items() if k not in BOOKKEEPING}
    assert step.row["iteration"] == counter.iteration == 1
    assert step.row["train_loss"] == -0.25 and step.row["score"] == step.value == 0.25
    assert step.row["time_this_iter_s"] == step.elapsed_s >= 0
    assert step.error is None and step.metric_error is None
    assert run_iteration(counter, "score").row["iteration"] == 2


def test_already_prefixed_train_metrics_keep_their_name() -> None:
    step = run_iteration(Scripted({"train_acc": 0.5, "loss": 1.0}, {"acc": 0.4}), "acc")
    assert list(step.metrics) == ["train_acc", "train_loss", "acc"]


def test_registered_toy_workload() -> None:
    toy = get("pbt-toy")({"h0": 0.7, "h1": 0.3}, options={"steps_per_iteration": 2})
    step = run_iteration(toy, "score")
    assert step.error is None
    assert step.value == pytest.approx(toy.evaluate()["score"])
    assert {"train_loss", "train_surrogate", "score", "loss"} <= set(step.row)
    assert step.row["iteration"] == 1


def test_non_finite_metric_gives_the_workers_message() -> None:
    step = run_iteration(Counter({"lr": 0.95}, options={"nan_above": 0.9}), "score")
    assert math.isnan(step.value)
    assert step.error == "non-finite metric or loss at iteration 1: score=nan, losses=[nan, nan]"
    assert step.metric_error is None  # a number, just not finite: Tune and replay go on
    assert "score" in step.row  # the iteration that diverged stays visible


@pytest.mark.parametrize("loss", [math.inf, -math.inf, math.nan])
def test_non_finite_loss_with_a_finite_metric(loss: float) -> None:
    step = run_iteration(Scripted({"loss": loss}, {"acc": 0.5, "val_loss": 1.5}), "acc")
    assert step.value == 0.5
    assert step.error == (f"non-finite metric or loss at iteration 1: acc=0.5, "
                          f"losses={[loss, 1.5]}")


def test_a_loss_that_is_not_a_number_is_an_error_but_not_a_metric_error() -> None:
    step = run_iteration(Scripted({"loss": "low"}, {"acc": 0.5}), "acc")
    assert step.value == 0.5 and step.metric_error is None
    assert step.error is not None and "'train_loss'" in step.error and "str" in step.error


@pytest.mark.parametrize("value, type_name", [
    ("0.5", "str"), ("abc", "str"), (None, "NoneType"), ([0.5], "list"),
    (np.array([0.5, 0.6]), "ndarray"),
])
def test_wrong_metric_type_is_a_clear_message(value: Any, type_name: str) -> None:
    step = run_iteration(Scripted({"loss": 1.0}, {"acc": value}), "acc")
    assert math.isnan(step.value)
    assert step.error == step.metric_error
    assert step.error is not None
    assert step.error.startswith(f"metric 'acc' from evaluate() at iteration 1 has type "
                                 f"{type_name} (")
    assert "not a number" in step.error
    assert step.row["acc"] is value  # the row keeps what the workload returned


def test_a_long_value_is_shortened_in_the_message() -> None:
    step = run_iteration(Scripted({}, {"acc": np.arange(1000.0)}), "acc")
    assert step.error is not None and len(step.error) < 250


def test_scalars_float_accepts_still_count_as_numbers() -> None:
    torch = pytest.importorskip("torch")
    for value in (np.float32(0.5), np.array(0.5), np.int64(1), torch.tensor(0.5), True, 2):
        assert as_number(value) == float(value)
        step = run_iteration(Scripted({"loss": torch.tensor(0.1)}, {"acc": value}), "acc")
        assert step.error is None and step.value == float(value)


def test_missing_metric_names_what_evaluate_returned() -> None:
    step = run_iteration(Scripted({"loss": 1.0}, {"val_loss": 2.0, "acc": 0.5}), "score")
    assert math.isnan(step.value)
    assert step.error == step.metric_error == (
        "metric 'score' is not among the metrics evaluate() returned at iteration 1: "
        "['acc', 'val_loss']")


def test_a_train_metric_is_not_the_ranking_metric() -> None:
    """The metric comes from ``evaluate()`` only, as every engine has always read it."""
    step = run_iteration(Scripted({"acc": 0.9}, {"loss": 1.0}), "train_acc")
    assert step.metric_error is not None


def test_exceptions_in_user_code_propagate() -> None:
    with pytest.raises(RuntimeError, match="boom in user code"):
        run_iteration(Counter({"lr": 0.1}, options={"raise_at": 1}), "score")
