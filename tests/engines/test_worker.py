"""The worker actor on real Ray: segments run in order; a stop reaches a running segment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

TOY = f"{Path(__file__).with_name('toy_workload.py')}:Counter"
RUN = {"metric": "score", "mode": "max"}


def test_request_stop_ends_a_running_segment_and_order_is_kept(ray_local) -> None:
    from pbtune.engines.native.worker import RemoteWorker

    ray = ray_local
    worker = RemoteWorker.options(num_cpus=0).remote(
        TOY, {"sleep": 0.02}, {"offset": None}, 0, "cpu", 1)
    # Submission order on the training thread: run a to 3, run b to 2; a's state at 3 is
    # exported (on the transfer thread) once its segment is known to have ended there.
    first, _, _ = worker.run.remote("a", {"lr": 0.5}, 0, 3, **RUN)
    second, _, _ = worker.run.remote("b", {"lr": 0.25}, 0, 2, **RUN)
    assert ray.get(first)["iteration"] == 3
    _done, exported = worker.export.remote("a", 3)
    state = ray.get(exported)
    assert {k: state[k] for k in ("value", "iteration", "config")} == {
        "value": 1.5, "iteration": 3, "config": {"lr": 0.5}}
    assert ray.get(second)["rows"][-1]["score"] == 0.5

    long_run, _, snapshot = worker.run.remote("c", {"lr": 1.0}, 0, 10_000, **RUN)  # 200 s
    time.sleep(1.0)
    started = time.monotonic()
    ray.get(worker.request_stop.remote())  # answered while the segment runs: own thread
    result = ray.get(long_run, timeout=30)
    assert time.monotonic() - started < 5
    assert result["status"] == "ok" and 1 <= result["iteration"] < 10_000
    assert ray.get(snapshot)["iteration"] == result["iteration"]
    # The flag stays set: a later segment stops after its first iteration.
    later, _, _ = worker.run.remote("d", {"lr": 1.0}, 0, 10_000, **RUN)
    assert ray.get(later, timeout=30)["iteration"] == 1
    ray.kill(worker)
