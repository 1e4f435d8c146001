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
