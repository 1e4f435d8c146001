"""One pbtune process at a time per run directory: an advisory lock on ``<run_dir>/.lock``.

Why: two ``pbtune resume`` of one run, or a resume while the run is still alive, would both
append rows, decisions and journal events to the same files (duplicated rows, exploit counts
that disagree with ``pbt_global.txt``, two ``end`` events). The lock is ``flock``-based, so the
kernel releases it when its process dies however it dies (SIGKILL included): a crashed run never
leaves a stale lock behind. Within one process the lock is counted, so ``pbtune resume`` can hold
it from before the result files are rolled back until its engine's writer takes it over.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO

from pbtune.errors import UserError

LOCK_NAME = ".lock"
_HELD: dict[Path, RunLock] = {}


class RunLock:
    """A held lock on a run directory (see :func:`lock_run`); :meth:`release` when done."""

    def __init__(self, key: Path, handle: IO[str] | None) -> None:
        self.key, self.handle, self.count = key, handle, 1

    def release(self) -> None:
        self.count -= 1
        if self.count > 0:
            return
        _HELD.pop(self.key, None)
        if self.handle is not None:
            self.handle.close()  # closing the file drops the flock


def lock_run(run_dir: Path) -> RunLock:
    """Lock ``run_dir`` for this process, or raise :class:`UserError` naming the holder."""
    key = Path(run_dir).resolve()
    held = _HELD.get(key)
    if held is not None:
        held.count += 1
        return held
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no advisory locks to take
        lock = _HELD[key] = RunLock(key, None)
        return lock
    path = key / LOCK_NAME
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"run directory {run_dir} is in use by {holder}; wait for it to end, or "
                        "stop it (Ctrl-C) and then `pbtune resume` it") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pbtune pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    lock = _HELD[key] = RunLock(key, handle)
    return lock
