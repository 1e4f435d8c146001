"""Dispatchers (affinity, fifo, speed-aware EFT over measured speeds) and per-node options: pure,
no Ray."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import pytest

from pbtune.engines.dispatch import create_dispatcher
from pbtune.engines.node_options import driver_options, resolve_for_node

FAST, SLOW = 10.0, 10.0 / 3  # iterations per compute-second: the slow worker is 3× slower


@dataclass(eq=False)
class Trial:
    """What a dispatcher reads of a trial (the ``Runnable`` protocol), nothing engine-specific."""

    trial_id: str
    iteration: int = 0
    worker: int | None = None
    scores: dict[int, float] = field(default_factory=dict)


def trials(n: int, scores: list[float] | None = None) -> list[Trial]:
    out = []
    for i in range(n):
        t = Trial(trial_id=f"t{i:03d}")
        if scores is not None:
            t.scores = {2: scores[i]}
        out.append(t)
    return out


def simulate(policy: str, n_trials: int, speeds: dict[int, float], seg: int = 2) -> float:
    """Makespan (s) of one generation of ``n_trials`` segments of ``seg`` iterations, driving
    the dispatcher the way the engine does (re-plan after every finished segment)."""
    dispatcher = create_dispatcher(policy)
    runnable, clock, events = trials(n_trials), 0.0, []  # events: (end time, worker, start)
    running: dict[int, tuple[float, int]] = {}
    while runnable or events:
        idle = sorted((w for w in speeds if w not in running), key=lambda w: -speeds[w])
        now_running = {w: (clock - start, seg) for w, (start, _) in running.items()}
        picks = dispatcher.assign(idle, runnable, now_running, speeds=speeds, mode="max",
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
    assign = create_dispatcher("speed-aware").assign
    # Fast worker busy, 0.05 s left: the segment ends at 0.25 s there vs 0.6 s on the slow one.
    assert assign([1], one, {0: (0.15, 2)}, speeds=speeds, mode="max",
                  length=lambda t: 2) == []
    # Fast worker busy for another 0.7 s: the slow worker's 0.6 s beats 0.7 + 0.2 s: it starts.
    assert assign([1], one, {0: (0.0, 7)}, speeds=speeds, mode="max",
                  length=lambda t: 2) == [(1, one[0])]
    # Nothing running: an idle worker always starts (the run cannot stall).
    assert assign([1], one, {}, speeds=speeds, mode="max",
                  length=lambda t: 2) == [(1, one[0])]


def test_most_promising_trials_go_to_the_fastest_workers():
    scores = [0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.6, 0.2]
    pop = trials(8, scores=scores)
    speeds = {0: SLOW, 1: FAST, 2: SLOW, 3: FAST}
    assign = create_dispatcher("speed-aware").assign
    picks = dict(assign([1, 3, 0, 2], pop, {}, speeds=speeds, mode="max",
                        length=lambda t: 2))
    # Fast workers start the two best now; the slow ones the two worst (t000 0.1, t007 0.2), the
    # middle four wait for the fast workers (0.4 to 0.8 s there, vs 0.6 s on a slow worker).
    assert {picks[1].trial_id, picks[3].trial_id} == {"t001", "t005"}
    assert {picks[0].trial_id, picks[2].trial_id} == {"t000", "t007"}
    mins = dict(assign([1, 3, 0, 2], trials(8, scores=scores), {},
                       speeds=speeds, mode="min", length=lambda t: 2))
    assert {mins[1].trial_id, mins[3].trial_id} == {"t000", "t007"}  # mode=min: lowest is best


def test_unmeasured_speeds_fall_back_to_every_idle_worker_taking_work():
    pop = trials(3)
    picks = create_dispatcher("speed-aware").assign([0, 1, 2], pop, {}, speeds={}, mode="max",
                                                    length=lambda t: 2)
    assert len(picks) == 3


def test_affinity_keeps_state_in_place_then_prefers_new_then_idle_held_trials():
    own, new, idle_held, busy_held = trials(4)
    own.worker, idle_held.worker, busy_held.worker = 0, 2, 3
    own.iteration = idle_held.iteration = busy_held.iteration = 4  # waited less than ``new``
    picks = create_dispatcher("affinity").assign(
        [1, 0, 2], [busy_held, idle_held, new, own], {3: (0.1, 2)}, speeds={}, mode="max",
        length=lambda t: 2)
    # Worker 1 holds nothing: a new trial first; worker 0 continues its own; worker 2 its own.
    assert [(w, t.trial_id) for w, t in picks] == [(1, "t001"), (0, "t000"), (2, "t002")]


def test_fifo_takes_the_longest_waiting_wherever_its_state_is():
    pop = trials(3)
    pop[0].iteration, pop[0].worker = 6, 0
    pop[1].iteration, pop[2].iteration = 2, 2
    picks = create_dispatcher("fifo").assign([0, 1], pop, {}, speeds={}, mode="max",
                                             length=lambda t: 2)
    assert [(w, t.trial_id) for w, t in picks] == [(0, "t001"), (1, "t002")]


def test_per_node_slowdown_resolves_from_node_resources():
    opts = {"sleep": 0.1, "slowdown": {"slow": 3.0, "slower": 5.0}}
    assert resolve_for_node(opts, {"CPU": 1.0, "slow": 1.0})["slowdown"] == 3.0
    assert resolve_for_node(opts, {"slow": 1.0, "slower": 1.0})["slowdown"] == 5.0  # the largest
    assert resolve_for_node(opts, {"CPU": 4.0})["slowdown"] == 1.0
    assert resolve_for_node({"slowdown": 2.0}, {})["slowdown"] == 2.0  # a number stays
    assert driver_options(opts) == {"sleep": 0.1, "slowdown": 1.0}
