"""Registers the fake workload per test and removes it afterwards.

Why per test: the workload contract test parametrizes over ``list_workloads()`` at collection
time and must never see (and try to train) this stub.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pbtune.workloads import registry
from pbtune.workloads.base import Workload
from tests.config.fake_workload import FAKE, FakeWorkload


@pytest.fixture
def fake_workload() -> Iterator[type[Workload]]:
    registry.register(FAKE)(FakeWorkload)
    try:
        yield FakeWorkload
    finally:
        registry._REGISTRY.pop(FAKE, None)
