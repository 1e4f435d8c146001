"""The fused runner (engines/fused.py): K lanes' segments, trained in rounds, give each trial
exactly what run_segment gives it alone: rows, best state, end state, errors and stops."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
import torch

from pbtune.engines.fused import FusedRunner
from pbtune.engines.segment import Segment, run_segment
from tests.workloads.fusion_examples import CONFIGS, Mlp64
from tests.workloads.test_fusion import assert_states_close

DATA = Mlp64.load_data({})


class Fragile(Mlp64):
    """Raises in training when ``explode`` (a hyperparameter no optimiser has) is set."""

    name: ClassVar[str] = "test-fragile"
    hyperparameters: ClassVar[tuple[str, ...]] = (*Mlp64.hyperparameters, "explode")
    default_config: ClassVar[Mapping[str, Any]] = {**Mlp64.default_config, "explode": 0}

    def train_step(self, batch: Any) -> Any:
        # Under fusion one call serves the whole group, with the first member's self: a
        # hyperparameter read here must split groups (fusion_key), or members would share it.
        if self.config["explode"]:
            raise RuntimeError("exploded as configured")
        return super().train_step(batch)


def _segments(live: dict[str, Any], jobs: list[tuple[str, Mapping[str, Any], int]],
              cls: type = Mlp64, **kwargs: Any) -> list[Segment]:
    return [Segment(live, tid, lambda c=cfg, i=i: cls(c, data=DATA, seed=70 + i), cfg, target,
                    metric="accuracy", mode="max", **kwargs)
            for i, (tid, cfg, target) in enumerate(jobs)]


def _run_all(runner: FusedRunner, segments: list[Segment]) -> list[Any]:
    """Each segment from its own thread, as a Ray worker's concurrent run() calls do."""
    out: list[Any] = [None] * len(segments)

    def go(i: int) -> None:
        out[i] = runner.run(segments[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(segments))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(o is not None for o in out)
    return out


def _reference(jobs: list[tuple[str, Mapping[str, Any], int]], cls: type = Mlp64) -> list[Any]:
    live: dict[str, Any] = {}
    return [run_segment(live, tid, lambda c=cfg, i=i: cls(c, data=DATA, seed=70 + i), cfg,
                        target, metric="accuracy", mode="max")
            for i, (tid, cfg, target) in enumerate(jobs)]


JOBS = [("a", CONFIGS[0], 3), ("b", CONFIGS[1], 3), ("c", CONFIGS[2], 5), ("d", CONFIGS[3], 2)]


def _same(got: Any, want: Any) -> None:
    (result, best, end), (ref_result, ref_best, ref_end) = got, want
    assert result["status"] == ref_result["status"] == "ok"
    assert result["iteration"] == ref_result["iteration"]
    assert result["best_iteration"] == ref_result["best_iteration"]
    assert len(result["rows"]) == len(ref_result["rows"])
    for row, ref in zip(result["rows"], ref_result["rows"], strict=True):
        assert row["iteration"] == ref["iteration"]
        for key in ("accuracy", "loss", "train_loss", "train_accuracy"):
            assert row[key] == pytest.approx(ref[key], abs=1e-10), key
    for state, ref_state in ((best, ref_best), (end, ref_end)):
        a, b = Mlp64({}, data=DATA), Mlp64({}, data=DATA)
        a.set_state(state)
        b.set_state(ref_state)
        assert_states_close(a, b, 1e-10)


@pytest.mark.parametrize("fuse", ["always", "never"])
def test_rounds_give_every_trial_what_it_gets_alone(fuse: str) -> None:
    runner = FusedRunner(4, fuse=fuse, gather_s=0.5)
    got = _run_all(runner, _segments({}, JOBS))
    for g, w in zip(got, _reference(JOBS), strict=True):
        _same(g, w)
    # a and b (3 iterations) with c and d: every round fused while two or more are left
    assert (runner.fused_rounds == 3) if fuse == "always" else runner.fused_rounds == 0


def test_auto_times_both_ways_then_keeps_one(capfd: pytest.CaptureFixture[str]) -> None:
    runner = FusedRunner(4, fuse="auto", gather_s=0.5)
    jobs = [(t, c, 6) for t, c, _ in JOBS]
    got = _run_all(runner, _segments({}, jobs))
    for g, w in zip(got, _reference(jobs), strict=True):
        _same(g, w)
    note = capfd.readouterr().err
    assert "4 Mlp64 trials fused took" in note and "x the time of training them" in note
    assert runner.fused_rounds >= 2  # the two rounds it timed fused


def test_members_continue_live_between_segments_and_take_exploits() -> None:
    runner = FusedRunner(2, fuse="always", gather_s=0.5)
    live: dict[str, Any] = {}
    first = _run_all(runner, _segments(live, [("a", CONFIGS[0], 2), ("b", CONFIGS[1], 2)]))
    assert set(live) == {"a", "b"}  # kept live on the worker, as unfused
    # b exploits a (a's state, b's own data order) and explores; a continues as it is
    jobs = [("a", CONFIGS[0], 4), ("b", CONFIGS[2], 4)]
    segs = _segments(live, jobs)
    segs[1].load_args = (first[0][2], False, None)
    got = _run_all(runner, segs)
    ref_live: dict[str, Any] = {}
    ref = [run_segment(ref_live, t, lambda c=c, i=i: Mlp64(c, data=DATA, seed=70 + i), c, 2,
                       metric="accuracy", mode="max")
           for i, (t, c) in enumerate([("a", CONFIGS[0]), ("b", CONFIGS[1])])]
    want = [run_segment(ref_live, "a", lambda: None, CONFIGS[0], 4, metric="accuracy",
                        mode="max"),
            run_segment(ref_live, "b", lambda: None, CONFIGS[2], 4, state=ref[0][2],
                        include_rng=False, metric="accuracy", mode="max")]
    for g, w in zip(got, want, strict=True):
        _same(g, w)


def test_an_error_in_a_group_fails_its_members_and_the_runner_goes_on() -> None:
    runner = FusedRunner(3, fuse="always", gather_s=0.5)
    live: dict[str, Any] = {}
    bad = {**CONFIGS[0], "explode": 1}
    got = _run_all(runner, _segments(live, [("a", bad, 2), ("b", {**bad, "lr": 0.3}, 2),
                                            ("c", CONFIGS[1], 2)], cls=Fragile))
    for result, best, end in got[:2]:  # one group: both fail
        assert result["status"] == "error" and "exploded as configured" in result["error"]
        assert best is None and end is None
    assert got[2][0]["status"] == "ok"  # explode differs: another group, alone
    assert set(live) == {"c"}  # half-trained states are never continued
    again = _run_all(runner, _segments(live, [("a", CONFIGS[0], 2), ("b", CONFIGS[2], 2)],
                                       cls=Fragile))
    assert [r[0]["status"] for r in again] == ["ok", "ok"]
    assert runner.fused_rounds == 2  # the failed round is not counted


def test_stop_and_batch_size_groups() -> None:
    runner = FusedRunner(4, fuse="always", gather_s=0.5)
    stop = threading.Event()
    jobs = [("a", CONFIGS[0], 5), ("b", CONFIGS[1], 5),
            ("c", {**CONFIGS[2], "batch_size": 32}, 5), ("d", {**CONFIGS[3], "batch_size": 32}, 5)]
    segs = _segments({}, jobs, stop=stop.is_set)
    original = segs[0].record

    def record(step: Any) -> None:  # a stop request arrives during the second round
        if step.row["iteration"] == 2:
            stop.set()
        original(step)

    segs[0].record = record  # type: ignore[method-assign]
    got = _run_all(runner, segs)
    assert [r[0]["iteration"] for r in got] == [2, 2, 2, 2]
    assert runner.fused_rounds == 4  # two groups (batch 16, batch 32), two rounds each
    assert all(torch.isfinite(torch.tensor(r[0]["rows"][-1]["loss"])) for r in got)


def test_a_move_between_lanes_of_one_worker_sends_no_drop():
    """Lanes share their worker's live trials: dropping a trial that moves from lane 0 to lane
    1 could overtake (it runs on another thread) the segment that continues it there and
    lose it; between two processes the old holder is told to drop it."""
    from pbtune.engines.core.events import Restore, RunSegment
    from pbtune.engines.native.executor import RayExecutor

    class Method:
        def __init__(self, calls, name):
            self.calls, self.name = calls, name

        def remote(self, *args, **kwargs):
            self.calls.append(self.name)
            return (object(), object(), object()) if self.name == "run" else object()

    class Handle:
        def __init__(self):
            self.calls: list[str] = []
            self.run, self.drop = Method(self.calls, "run"), Method(self.calls, "drop")

    class Pool:
        def __init__(self, workers):
            self.workers, self.holds_states = workers, False

        def membership(self):
            return (len(self.workers), 0, 0)

    fused, other = Handle(), Handle()
    cfg = type("Cfg", (), {"metric": "m", "mode": "max",
                           "stop": type("Stop", (), {"metric_threshold": None})})()
    executor = RayExecutor(cfg, pool=Pool([fused, fused, other]))
    executor.execute(RunSegment(1, "t", {}, 0, 2, Restore("state"), 0, None, None))
    assert fused.calls == ["run"]
    executor.execute(RunSegment(2, "t", {}, 0, 4, Restore("state"), 1, None, None))
    assert fused.calls == ["run", "drop"] and other.calls == ["run"]


class BrokenView(Mlp64):
    """Its fusion() raises (a user's workload, or a bug): the trial must fail, not hang."""

    name: ClassVar[str] = "test-broken-view"

    def fusion(self) -> Any:
        raise RuntimeError("fusion view is broken")


def test_a_fault_outside_the_workloads_own_steps_fails_segments_and_never_hangs(monkeypatch):
    runner = FusedRunner(2, fuse="always", gather_s=0.2)
    got = _run_all(runner, _segments({}, [("a", CONFIGS[0], 2), ("b", CONFIGS[1], 2)],
                                     cls=BrokenView))
    assert [r[0]["status"] for r in got] == ["error", "error"]
    assert all("fusion view is broken" in r[0]["error"] for r in got)
    # A fault in the runner's own round (here: grouping) fails what it holds; it goes on.
    monkeypatch.setattr(runner, "_round", lambda segments: 1 / 0)
    got = _run_all(runner, _segments({}, [("c", CONFIGS[0], 2)]))
    assert got[0][0]["status"] == "error" and "ZeroDivisionError" in got[0][0]["error"]
    monkeypatch.undo()
    got = _run_all(runner, _segments({}, [("d", CONFIGS[0], 2), ("e", CONFIGS[1], 2)]))
    assert [r[0]["status"] for r in got] == ["ok", "ok"]


def test_a_member_that_diverges_errors_alone_and_leaves_its_group_exact():
    """Members are independent slices: one whose loss goes non-finite (lr 1e12) errors as it
    would unfused, and the member fused with it trains exactly as it would alone."""
    runner = FusedRunner(2, fuse="always", gather_s=0.5)
    jobs = [("a", CONFIGS[0], 3), ("b", {**CONFIGS[1], "lr": 1e12}, 3)]
    got = _run_all(runner, _segments({}, jobs))
    ref = _reference(jobs)
    assert got[1][0]["status"] == ref[1][0]["status"] == "error"
    assert "non-finite" in got[1][0]["error"]
    assert runner.fused_rounds >= 1
    _same(got[0], ref[0])


def test_auto_decides_once_per_model_kind_even_as_epoch_positions_change(capfd):
    """Iterations of a few steps move each member's position in its epoch every round (part of
    the group key); auto still decides after its four timed rounds and keeps one decision."""
    runner = FusedRunner(2, fuse="auto", gather_s=0.5)
    jobs = [("a", CONFIGS[0], 7), ("b", CONFIGS[1], 7)]
    segs = [Segment({}, t, lambda c=c, i=i: Mlp64(c, data=DATA, seed=70 + i,
                                                   options={"steps_per_iteration": 3}),
                    c, target, metric="accuracy", mode="max")
            for i, (t, c, target) in enumerate(jobs)]
    got = _run_all(runner, segs)
    assert [r[0]["status"] for r in got] == ["ok", "ok"]
    assert len(runner._choices) == 1
    assert next(iter(runner._choices.values())).fused is not None
    assert capfd.readouterr().err.count("trials fused took") == 1


def test_parking_between_rounds_never_parks_a_trial_that_is_training():
    """A GPU fused worker parks trials beyond gpu_live_trials between rounds; a member still
    training (a longer segment on another lane) must stay live, or its parked copy goes stale
    and its next segment continues from it."""
    from pbtune.engines.segment import Parked, park

    live: dict[str, Any] = {}
    parked: list[set[str]] = []

    def after_round(keep: set[str]) -> None:
        park(live, 1, keep)
        parked.append({t for t, w in live.items() if isinstance(w, Parked)})

    runner = FusedRunner(2, fuse="always", gather_s=0.5, after_round=after_round)
    first = [("a", CONFIGS[0], 4), ("b", CONFIGS[1], 1)]
    _run_all(runner, _segments(live, first))
    assert "a" not in set().union(*parked[:-1])  # never parked while its segment ran
    assert any("b" in p for p in parked)  # b was parked once done (budget 1)
    got = _run_all(runner, _segments(live, [("a", CONFIGS[0], 5), ("b", CONFIGS[1], 3)]))
    ref_live: dict[str, Any] = {}
    for t, c, target in first:
        run_segment(ref_live, t, lambda c=c, t=t: Mlp64(c, data=DATA, seed=70 + "ab".index(t)),
                    c, target, metric="accuracy", mode="max")
    want = [run_segment(ref_live, t, lambda: None, c, target, metric="accuracy", mode="max")
            for t, c, target in [("a", CONFIGS[0], 5), ("b", CONFIGS[1], 3)]]
    for g, w in zip(got, want, strict=True):
        _same(g, w)
