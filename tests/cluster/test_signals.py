"""Signals while Ray starts: held until ``ray.init`` returns, then delivered as Ctrl-C.

A SIGTERM or Ctrl-C that interrupted ``ray.init`` half-way left the Ray processes it had started
running with nobody to stop them (seen: gcs_server, raylet and two workers after a SIGTERM 2 s
into ``pbtune run``). Ray's own SIGTERM handler (which exits at once) is not installed either.
"""

from __future__ import annotations

import os
import signal
import time

import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_ray_init_is_held_then_raised(sig):
    import ray._private.utils as ray_utils

    from pbtune.cluster.nodes import _own_sigterm

    seen = []

    def mine(signum, frame):
        seen.append(signum)

    previous = signal.signal(sig, mine)
    original = ray_utils.set_sigterm_handler
    try:
        with pytest.raises(KeyboardInterrupt):
            with _own_sigterm():
                ray_utils.set_sigterm_handler(lambda *a: seen.append("ray"))  # as ray.init does
                os.kill(os.getpid(), sig)
                time.sleep(0.2)
                assert seen == []  # held: nothing acted on it yet
        assert signal.getsignal(sig) is mine and ray_utils.set_sigterm_handler is original
        with _own_sigterm():  # no signal: nothing raised
            pass
        assert seen == [] and signal.getsignal(sig) is mine
    finally:
        signal.signal(sig, previous)
        ray_utils.set_sigterm_handler = original


@pytest.mark.ray
@pytest.mark.parametrize("delay_s", [0.05, 0.15, 0.3])
def test_ctrl_c_while_the_finished_run_stops_ray_leaves_no_ray_process(tmp_path, delay_s):
    """A Ctrl-C right after the summary (the local Ray is stopping) is held until Ray has
    stopped: exit 130 and no process of the run's session left (before: Ray's dashboard and
    runtime-env agents stayed, exit 1)."""
    import subprocess
    import sys

    import psutil

    from tests.conftest import REPO

    env = {**os.environ, "PYTHONPATH": REPO, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pbtune.cli import console; console()", "run", "--quiet",
         "--no-plots", "--results-dir", str(tmp_path), "--set", "stop.max_iterations=4"],
        cwd=REPO, env=env, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # the summary's first line: the run is over, Ray stops next
            if line.startswith("best "):
                time.sleep(delay_s)
                os.kill(proc.pid, signal.SIGINT)
                break
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130), err[-2000:]  # 0: the signal came after the stop
        assert "Traceback" not in err
        deadline = time.time() + 10
        while time.time() < deadline:
            left = [p for p in psutil.process_iter(["pid"]) if _session(p) == proc.pid]
            if not left:
                break
            time.sleep(0.5)
        assert not left, [p.cmdline() for p in left]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _session(process):
    try:
        return os.getsid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None
