"""One pbtune process per run directory (issue 14 item 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pbtune.errors import UserError
from pbtune.store.lock import LOCK_NAME, lock_run

HOLD = """
import sys, time
from pbtune.store.lock import lock_run
lock_run(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def holder(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holder_named(tmp_path):
    proc = holder(tmp_path)
    try:
        with pytest.raises(UserError, match=rf"in use by pbtune pid {proc.pid} on "):
            lock_run(tmp_path)
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    proc = holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            lock = lock_run(tmp_path)
            break
        except UserError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert f"pid {os.getpid()}" in (tmp_path / LOCK_NAME).read_text()
    lock.release()


def test_the_lock_is_counted_within_one_process(tmp_path):
    first = lock_run(tmp_path)
    second = lock_run(tmp_path)
    first.release()
    proc = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "is in use by" in proc.stderr  # still held
    second.release()
    proc = holder(tmp_path)  # now free
    proc.kill()
    proc.wait()
