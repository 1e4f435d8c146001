"""The coordinator's population index (no Ray): what it answers equals a scan of the trials."""

from __future__ import annotations

import random

import pytest

from pbtune.engines.base import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial
from pbtune.engines.core.index import PopulationIndex
from pbtune.engines.core.state import TrialState
from pbtune.engines.dispatch import DISPATCHERS, create_dispatcher

STATUSES = (PENDING, PAUSED, RUNNING, TERMINATED, ERROR)


def population(rng: random.Random, n: int, workers: int) -> dict[str, TrialState]:
    trials = {}
    for i in range(n):
        t = TrialState(Trial(f"t{i:03d}", {"lr": 0.1}, seed=i))
        t.record.iteration = rng.randrange(0, 6)
        t.record.status = rng.choice(STATUSES)
        t.record.worker = rng.choice([None, *range(workers)])
        trials[t.trial_id] = t
    return trials


def scan(trials, barrier):
    behind = {t.trial_id for t in trials.values()
              if t.status in (PENDING, PAUSED, RUNNING) and t.iteration < barrier}
    runnable = {t.trial_id for t in trials.values()
                if t.status in (PENDING, PAUSED) and t.iteration < barrier}
    return behind, runnable


@pytest.mark.parametrize("seed", range(20))
def test_the_index_follows_every_change(seed):
    rng = random.Random(seed)
    trials = population(rng, 30, 3)
    index = PopulationIndex(trials, barrier=4)
    for step in range(200):
        t = rng.choice(list(trials.values()))
        what = rng.randrange(4)
        if what == 0:
            t.status = rng.choice(STATUSES)
        elif what == 1:
            t.iteration = rng.randrange(0, 8)
        elif what == 2:
            t.worker = rng.choice([None, 0, 1, 2])
        elif step % 50 == 0:
            index.set_barrier(rng.choice([2, 4, 6]))
        assert (index.behind, index.runnable) == scan(trials, index.barrier)
        counts = {s: sum(1 for u in trials.values() if u.status == s) for s in STATUSES}
        assert {s: index.counts[s] for s in STATUSES} == counts


@pytest.mark.parametrize("name", [n for n in DISPATCHERS.names()
                                  if DISPATCHERS.get(n).local])
@pytest.mark.parametrize("seed", range(40))
def test_local_dispatchers_choose_the_same_from_the_candidates(name, seed):
    """``affinity`` and ``fifo`` given each holder's longest-waiting trials choose exactly what
    they choose from every runnable trial."""
    rng = random.Random(seed)
    workers = rng.randrange(1, 5)
    trials = population(rng, rng.randrange(1, 60), workers)
    index = PopulationIndex(trials, barrier=4)
    for _ in range(rng.randrange(0, 30)):  # stale heap entries
        t = rng.choice(list(trials.values()))
        t.iteration, t.worker = rng.randrange(0, 5), rng.choice([None, *range(workers)])
    idle = sorted(rng.sample(range(workers), rng.randrange(1, workers + 1)))
    running = {w: (1.0, 2) for w in range(workers) if w not in idle}
    dispatcher = create_dispatcher(name)

    def assign(group):
        return [(w, t.trial_id) for w, t in dispatcher.assign(
            idle, group, running, speeds={}, mode="max", length=lambda t: 1)]

    assert assign(index.candidates(len(idle))) == assign(index.all_runnable())
