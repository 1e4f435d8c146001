"""The contract every registered dispatcher keeps, checked on generated inputs (pure; no Ray).

Why property-based: a dispatcher that starts a trial twice, gives a busy worker work, or leaves
every worker idle with nothing running corrupts or stalls a run only on rare cluster states, which
hand-written examples miss. A new dispatcher registered in ``DISPATCHERS`` is checked here without
any edit to this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbtune.engines.dispatch import DISPATCHERS, Dispatcher, create_dispatcher
from pbtune.registry import UnknownName

NAMES = DISPATCHERS.names()
WORK_CONSERVING = ("affinity", "fifo")  # speed-aware may decline; see its module docstring
FAST = settings(max_examples=150, deadline=None, database=None)  # < 1 s per dispatcher


@dataclass(eq=False)
class Item:
    """A trial as a dispatcher sees it (the ``Runnable`` protocol); ``seg`` feeds ``length``."""

    trial_id: str
    iteration: int = 0
    worker: int | None = None
    scores: dict[int, float] = field(default_factory=dict)
    seg: int = 1


@dataclass
class Case:
    idle: list[int]
    runnable: list[Item]
    running: dict[int, tuple[float, int]]
    speeds: dict[int, float]
    mode: str

    def run(self, dispatcher: Dispatcher) -> list[tuple[int, Item]]:
        return dispatcher.assign(self.idle, self.runnable, self.running, speeds=self.speeds,
                                 mode=self.mode, length=lambda t: t.seg)


SCORES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1.0]))
SPEEDS = st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0])


@st.composite
def cases(draw: st.DrawFn, nothing_running: bool = False, measured: bool | None = None) -> Case:
    """A cluster state: workers split into idle and busy, trials held anywhere (or nowhere)."""
    workers = draw(st.permutations(range(draw(st.integers(1, 6)))))
    n_idle = len(workers) if nothing_running else draw(st.integers(0, len(workers)))
    idle, busy = list(workers[:n_idle]), workers[n_idle:]
    running = {w: (draw(st.floats(0, 2)), draw(st.integers(1, 4))) for w in busy}
    known = draw(st.lists(st.sampled_from([*workers, 99]), unique=True))  # 99: a lost worker
    speeds = {w: draw(SPEEDS) for w in known}
    if measured is False:
        speeds = {w: 0.0 for w in speeds}
    elif measured and not any(s > 0 for s in speeds.values()):
        speeds[workers[0]] = draw(st.sampled_from([1.0, 10.0]))
    holders = st.one_of(st.none(), st.sampled_from([*workers, 42]))
    runnable = [
        Item(f"t{i:03d}", draw(st.integers(0, 3)), draw(holders),
             draw(st.dictionaries(st.integers(0, 3), SCORES, max_size=2)), draw(st.integers(1, 4)))
        for i in range(draw(st.integers(0, 8)))
    ]
    return Case(idle, draw(st.permutations(runnable)), running, speeds,
                draw(st.sampled_from(["max", "min"])))


def summary(picks: list[tuple[int, Item]]) -> list[tuple[int, str]]:
    return [(worker, trial.trial_id) for worker, trial in picks]


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(case=cases())
def test_only_idle_workers_each_once_and_each_trial_once(name, case):
    picks = case.run(create_dispatcher(name))
    workers = [w for w, _t in picks]
    assert len(set(workers)) == len(workers), picks
    assert set(workers) <= set(case.idle), picks
    assert [w for w in case.idle if w in workers] == workers, "pairs come in idle order"
    started = [id(t) for _w, t in picks]
    assert len(set(started)) == len(started), picks
    assert set(started) <= {id(t) for t in case.runnable}, "only given trials start"


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(case=cases(nothing_running=True))
def test_nothing_running_means_something_starts(name, case):
    picks = case.run(create_dispatcher(name))
    assert picks or not case.runnable, "dispatch stalled with every worker idle"


@pytest.mark.parametrize("name", WORK_CONSERVING)
@FAST
@given(case=cases())
def test_work_conserving_dispatchers_fill_every_idle_worker(name, case):
    picks = case.run(create_dispatcher(name))
    assert len(picks) == min(len(case.idle), len(case.runnable)), picks


@FAST
@given(case=cases(measured=False))
def test_speed_aware_is_work_conserving_until_a_speed_is_measured(case):
    picks = case.run(create_dispatcher("speed-aware"))
    assert summary(picks) == summary(case.run(create_dispatcher("affinity")))


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(case=cases(measured=True))
def test_deterministic(name, case):
    first = summary(case.run(create_dispatcher(name)))
    assert summary(case.run(create_dispatcher(name))) == first
    assert summary(case.run(create_dispatcher(name))) == first


@pytest.mark.parametrize("name", NAMES)
def test_registry_creates_a_named_dispatcher(name):
    dispatcher = create_dispatcher(name)
    assert isinstance(dispatcher, Dispatcher) and dispatcher.name == name


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownName, match="unknown dispatcher 'nope'; valid: affinity, fifo"):
        create_dispatcher("nope")
    assert {"affinity", "fifo", "speed-aware"} <= set(NAMES)
