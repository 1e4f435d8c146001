"""Speed-aware dispatch (EFT over measured speeds) and per-node options: pure, no Ray."""

from __future__ import annotations

import heapq

import pytest

from pbtune.engines.base import Trial
from pbtune.engines.native.dispatch import assign
from pbtune.engines.node_options import driver_options, resolve_for_node

FAST, SLOW = 10.0, 10.0 / 3  # iterations per compute-second: the slow worker is 3× slower


def trials(n: int, scores: list[float] | None = None) -> list[Trial]:
    out = []
    for i in range(n):
        t = Trial(trial_id=f"t{i:03d}", config={"lr": 0.1}, seed=i)
        if scores is not None:
            t.scores = {2: scores[i]}
        out.append(t)
    return out


def simulate(policy: str, n_trials: int, speeds: dict[int, float], seg: int = 2) -> float:
    """Makespan (s) of one generation of ``n_trials`` segments of ``seg`` iterations, driving
    :func:`assign` the way the engine does (re-plan after every finished segment)."""
    runnable, clock, events = trials(n_trials), 0.0, []  # events: (end time, worker, start)
    running: dict[int, tuple[float, int]] = {}
    while runnable or events:
        idle = sorted((w for w in speeds if w not in running), key=lambda w: -speeds[w])
        now_running = {w: (clock - start, seg) for w, (start, _) in running.items()}
        picks = assign(idle, runnable, now_running, policy=policy, speeds=speeds, mode="max",
                       length=lambda t: seg)
        for worker, trial in picks:
            runnable.remove(trial)
            running[worker] = (clock, seg)
            heapq.heappush(events, (clock + seg / speeds[worker], worker))
        assert events, "nothing running while trials are runnable: dispatch stalled"
        clock, worker = heapq.heappop(events)
        del running[worker]
    return clock


def test_speed_aware_beats_work_conserving_fifo_at_the_generation_end():
    # 2 fast + 2 slow workers, 11 segments of 2 iterations (0.2 s fast, 0.6 s slow). At 0.6 s all
    # four are free with 3 segments left: fifo gives the last one to a slow worker (ends at 1.2 s);
    # EFT leaves it for a fast worker free at 0.8 s (ends at 1.0 s).
    speeds = {0: FAST, 1: FAST, 2: SLOW, 3: SLOW}
    assert simulate("fifo", 11, speeds) == pytest.approx(1.2)
    assert simulate("speed-aware", 11, speeds) == pytest.approx(1.0)
    # 16 segments: the ideal bound 32 / (2·10 + 2·10/3) = 1.2 s; EFT meets it.
    assert simulate("speed-aware", 16, speeds) == pytest.approx(1.2)
    # 4 segments: the slow workers are left out altogether (0.4 s instead of 0.6 s).
    assert simulate("speed-aware", 4, speeds) == pytest.approx(0.4)


def test_slow_worker_declines_only_when_a_fast_one_finishes_earlier():
    speeds = {0: FAST, 1: SLOW}
    one = trials(1)
    # Fast worker busy, 0.05 s left: the segment ends at 0.25 s there vs 0.6 s on the slow one.
    assert assign([1], one, {0: (0.15, 2)}, policy="speed-aware", speeds=speeds, mode="max",
                  length=lambda t: 2) == []
    # Fast worker busy for another 0.7 s: the slow worker's 0.6 s beats 0.7 + 0.2 s: it starts.
    assert assign([1], one, {0: (0.0, 7)}, policy="speed-aware", speeds=speeds, mode="max",
                  length=lambda t: 2) == [(1, one[0])]
    # Nothing running: an idle worker always starts (the run cannot stall).
    assert assign([1], one, {}, policy="speed-aware", speeds=speeds, mode="max",
                  length=lambda t: 2) == [(1, one[0])]


def test_most_promising_trials_go_to_the_fastest_workers():
    scores = [0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.6, 0.2]
    pop = trials(8, scores=scores)
    speeds = {0: SLOW, 1: FAST, 2: SLOW, 3: FAST}
    picks = dict(assign([1, 3, 0, 2], pop, {}, policy="speed-aware", speeds=speeds, mode="max",
                        length=lambda t: 2))
    # Fast workers start the two best now; the slow ones the two worst (t000 0.1, t007 0.2), the
    # middle four wait for the fast workers (0.4 to 0.8 s there, vs 0.6 s on a slow worker).
    assert {picks[1].trial_id, picks[3].trial_id} == {"t001", "t005"}
    assert {picks[0].trial_id, picks[2].trial_id} == {"t000", "t007"}
    mins = dict(assign([1, 3, 0, 2], trials(8, scores=scores), {}, policy="speed-aware",
                       speeds=speeds, mode="min", length=lambda t: 2))
    assert {mins[1].trial_id, mins[3].trial_id} == {"t000", "t007"}  # mode=min: lowest is best


def test_unmeasured_speeds_fall_back_to_every_idle_worker_taking_work():
    pop = trials(3)
    picks = assign([0, 1, 2], pop, {}, policy="speed-aware", speeds={}, mode="max",
                   length=lambda t: 2)
    assert len(picks) == 3


def test_per_node_slowdown_resolves_from_node_resources():
    opts = {"sleep": 0.1, "slowdown": {"slow": 3.0, "slower": 5.0}}
    assert resolve_for_node(opts, {"CPU": 1.0, "slow": 1.0})["slowdown"] == 3.0
    assert resolve_for_node(opts, {"slow": 1.0, "slower": 1.0})["slowdown"] == 5.0  # the largest
    assert resolve_for_node(opts, {"CPU": 4.0})["slowdown"] == 1.0
    assert resolve_for_node({"slowdown": 2.0}, {})["slowdown"] == 2.0  # a number stays
    assert driver_options(opts) == {"sleep": 0.1, "slowdown": 1.0}
