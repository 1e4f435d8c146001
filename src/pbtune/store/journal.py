"""The run journal: an append-only JSON-lines record of every decision (no Ray imports).

Why: ``pbtune resume`` must rebuild the whole experiment — population, hyperparameters, iteration
counters, lineage, the PBT RNG state, best so far, exploit count — after the driver died at any
instruction. Each line is one event; the file is flushed after every line and fsync'd at decision
points (exploits, cuts, the end), so after a crash the journal holds every decision up to the
last fsync and at most a torn final line, which :func:`read_journal` ignores.

Events (``"event"`` field): ``header`` (``version``, ``config_sha256``), ``start`` (trials with
config and seed, policy state), ``result`` (one per segment), ``exploit`` (decision and the PBT RNG
state after it), ``error``, ``worker_lost``, ``checkpoint``, ``cut`` (a consistent resume point:
every trial's record and checkpoint, policy state, exploit count), ``resume``, ``stop``, ``end``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from pbtune.errors import UserError

#: Bumped whenever a field resume reads changes meaning; other versions are refused.
JOURNAL_VERSION = 1
JOURNAL_NAME = "journal.jsonl"


def _default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


class Journal:
    """Appends events to ``<run_dir>/journal.jsonl``; safe to call from several threads.

    Args:
        run_dir: the run directory.
        header: fields of the header line, written only when the file is new.
    """

    def __init__(self, run_dir: Path, header: dict[str, Any] | None = None) -> None:
        self.path = Path(run_dir) / JOURNAL_NAME
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            cut_torn_tail(self.path)
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")
        if new:
            self.write({"event": "header", "version": JOURNAL_VERSION, **(header or {})},
                       sync=True)

    def write(self, record: dict[str, Any], sync: bool = False) -> None:
        """Append one event; ``sync`` fsyncs it (decision points)."""
        line = json.dumps(record, default=_default, allow_nan=True) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()


def cut_torn_tail(path: Path) -> bool:
    """Cut a torn last line (the driver was killed while appending it) off ``path``.

    Why before appending: the next event would otherwise be glued onto the torn line, making a
    *complete* line that is not valid JSON in the middle of the journal, and the run could never
    be resumed again. Returns whether anything was cut.
    """
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        keep = 0
        for block_end in range(size, 0, -65536):  # find the last newline from the end
            start = max(0, block_end - 65536)
            f.seek(start)
            at = f.read(block_end - start).rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return True


def read_journal(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the events of a run's journal; a torn last line is dropped.

    Raises:
        UserError: no journal, not a pbtune journal, or one from another version.
    """
    path = Path(run_dir) / JOURNAL_NAME
    if not path.is_file():
        raise UserError(f"{run_dir} is not a pbtune run directory (no {JOURNAL_NAME}); pass the "
                        "run directory printed by `pbtune run` (results/<experiment>/<run-id>)")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    events: list[dict[str, Any]] = []
    for n, line in enumerate(lines):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) - 1:  # torn final line: the driver died while writing it
                break
            raise UserError(f"{path} line {n + 1} is not valid JSON; the journal is corrupt and "
                            "the run cannot be resumed (start a new run)") from None
        if not isinstance(event, dict):
            raise UserError(f"{path} line {n + 1} is not a journal event; start a new run")
        events.append(event)
    if not events or events[0].get("event") != "header":
        raise UserError(f"{path} has no pbtune journal header; it was not written by pbtune")
    header = events[0]
    if header.get("version") != JOURNAL_VERSION:
        raise UserError(f"{path} has journal version {header.get('version')!r} (pbtune "
                        f"{header.get('pbtune', '?')}) but this pbtune reads version "
                        f"{JOURNAL_VERSION}; resume it with that pbtune version")
    return header, events[1:]


def find_resume_point(run_dir: Path, events: list[dict[str, Any]],
                      verify: Any) -> tuple[dict[str, Any], list[str]]:
    """The newest ``cut`` whose checkpoints all verify, and messages about the ones skipped.

    Falls back cut by cut (a truncated or corrupt checkpoint makes its cut unusable); with no usable
    cut, the ``start`` event is the resume point (every trial from iteration 0). ``verify(record)``
    raises ``ValueError`` for a bad checkpoint.

    Raises:
        UserError: the journal has no ``start`` event (the run died before training began).
    """
    messages: list[str] = []
    cuts = [e for e in events if e.get("event") == "cut"]
    for cut in reversed(cuts):
        problem = None
        for rec in cut["trials"].values():
            if rec.get("checkpoint") and rec["status"] not in ("TERMINATED", "ERROR"):
                try:
                    verify(rec["checkpoint"])
                    if rec.get("rng_checkpoint"):  # an exploit's target: its own state too
                        verify(rec["rng_checkpoint"])
                except ValueError as exc:
                    problem = str(exc)
                    break
        if problem is None:
            return cut, messages
        messages.append(f"checkpoint {problem}; falling back to the previous checkpoint "
                        f"(cut at iteration {cut['iteration']} skipped)")
    start = next((e for e in events if e.get("event") == "start"), None)
    if start is None:
        raise UserError(f"{run_dir} has a journal but the run never started training; start a "
                        "new run with `pbtune run`")
    if cuts:
        messages.append("no usable checkpoint; restarting every trial from iteration 0")
    trials = {t["trial_id"]: {**t, "iteration": 0, "status": "PENDING", "exploits": 0,
                              "failures": 0, "compute_s": 0.0, "checkpoint": None}
              for t in start["trials"]}
    return {"event": "cut", "iteration": 0, "last_barrier": 0, "exploits": 0, "trials": trials,
            "policy_state": start.get("policy_state")}, messages
