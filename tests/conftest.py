"""Shared fixtures: a small local Ray instance for the end-to-end tests (marked ``ray``)."""

from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def ray_local():
    """A local 2-CPU Ray instance, started once and reused (tests that need their own cluster
    shut it down; the next user starts it again)."""
    import ray

    if not ray.is_initialized():
        # Workers must import the test workloads (tests/...:Class) from the repo root.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p
        )
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
