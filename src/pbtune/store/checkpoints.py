"""Checkpoint files: atomic writes, sha256 verification, retention (no Ray imports).

Why: a checkpoint is only useful if it is either complete and correct or visibly broken. Files are
written to a temporary name, fsync'd, renamed into place and the directory fsync'd, so a crash
leaves the old file or the new one, never half of one; the sha256 recorded with each checkpoint
(in the journal) catches a file truncated or corrupted later, and resume then falls back to the
previous checkpoint instead of loading garbage.

Layout: ``<run_dir>/checkpoints/<trial_id>/iter_<n>.pt`` plus ``checkpoints/best.pt`` (the best
result's state, rewritten when the best improves).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pbtune.errors import UserError

#: errno values that mean "the disk, not the program": reported as a UserError with a resume hint.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM})


class CheckpointCorrupt(ValueError):
    """A checkpoint file is missing, truncated or does not match its recorded sha256."""


def disk_error(exc: OSError, run_dir: Path) -> UserError:
    """One-line UserError for a write that failed because of the disk (full, read-only, ...)."""
    what = exc.strerror or str(exc)
    return UserError(f"cannot write to {exc.filename or run_dir}: {what}; the run state up to the "
                     f"last checkpoint is kept — free space or fix permissions, then run "
                     f"`pbtune resume {run_dir}`")


def serialize_state(state: Any) -> bytes:
    """A trial state as bytes: ``torch.save`` for torch workloads, a pickle for torch-free ones.

    A state can hold tensors only if torch is loaded in this process (unpickling a tensor
    imports it), so a torch-free run (pbt-toy) never pays torch's 1.5 s import to write a file.
    """
    buf = io.BytesIO()
    if "torch" in sys.modules:  # torch.save keeps tensors compact and loadable with torch.load
        import torch

        torch.save(state, buf)
    else:
        pickle.dump(state, buf, protocol=pickle.HIGHEST_PROTOCOL)
    return buf.getvalue()


def deserialize_state(data: bytes) -> Any:
    """Inverse of :func:`serialize_state`: torch's zip format or a plain pickle."""
    if data[:2] == b"PK":  # torch.save's zip container
        import torch

        return torch.load(io.BytesIO(data), weights_only=False)
    return pickle.loads(data)


def load_state(path: Path | str) -> Any:
    """Read a state file (``best_model.pt`` or a checkpoint) whichever way it was written.

    Read from the file, never as one bytes object: a state of gigabytes costs its own size in
    memory, not twice that.
    """
    path = Path(path)
    with path.open("rb") as f:
        zipped = f.read(2) == b"PK"  # torch.save's zip container
    if zipped:
        import torch

        return torch.load(path, weights_only=False)
    with path.open("rb") as f:
        return pickle.load(f)


class LazyState(Mapping):
    """A state in a file, read on first access (``best_model.pt`` of a held, large state).

    Why: handing a callback a state of gigabytes it may never read would load it into the
    driver; this mapping loads it only if something reads it, and a writer that only needs the
    file (the results writer) takes ``path`` instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._state: Any = None

    def _load(self) -> Mapping:
        if self._state is None:
            self._state = load_state(self.path)
        return self._state

    def __getitem__(self, key: Any) -> Any:
        return self._load()[key]

    def __iter__(self) -> Any:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


class _Hashing:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, f: Any) -> None:
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.bytes += view.nbytes
        return self.f.write(view)

    def flush(self) -> None:
        self.f.flush()


def write_state_file(path: Path, state: Any) -> dict[str, Any]:
    """Write ``state`` to ``path`` atomically, streamed: ``{"sha256", "bytes"}`` of the file.

    Why streamed: :func:`serialize_state` builds the whole file in memory first, which for a
    state of gigabytes doubles the writer's memory. The temporary name is unique to this
    process and thread, so two writers of the same path never mix their bytes; the rename
    decides which whole file stays.
    """
    import threading

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as f:
            out = _Hashing(f)
            if "torch" in sys.modules:
                import torch

                torch.save(state, out)
            else:
                pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
            if out.bytes >= 64 * 2**20 and hasattr(os, "posix_fadvise"):
                # On disk now: its pages need not stay cached. Gigabytes of cached checkpoints
                # make every later allocation on this machine reclaim them first (measured:
                # copies of a 1.5 GB state took up to 4 s instead of 0.2 s).
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"sha256": out.sha.hexdigest(), "bytes": out.bytes}


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source``, atomically: a hard link (no copy of the
    bytes), or a copy where links are not possible (another filesystem)."""
    import shutil

    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def file_sha256(path: Path, chunk: int = 16 * 2**20) -> tuple[str, int]:
    """(sha256, size) of a file, read in chunks of ``chunk`` bytes."""
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while block := f.read(chunk):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (then fsync the dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """Writes, verifies and prunes a run's checkpoints.

    Args:
        run_dir: the run directory; checkpoints go to ``run_dir/checkpoints``.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / "checkpoints"

    def path_for(self, trial_id: str, iteration: int) -> Path:
        return self.root / trial_id / f"iter_{iteration:06d}.pt"

    def save(self, trial_id: str, iteration: int, state: Any, name: str | None = None) -> dict:
        """Write one state; returns its record ``{path, sha256, bytes, iteration}`` (path relative).

        Raises:
            OSError: on disk problems (callers turn them into :func:`disk_error`).
        """
        path = self.root / name if name else self.path_for(trial_id, iteration)
        return {"path": str(path.relative_to(self.run_dir)), "iteration": iteration,
                **write_state_file(path, state)}

    def load(self, record: dict) -> Any:
        """Read and verify a checkpoint written by :meth:`save`.

        Raises:
            CheckpointCorrupt: missing file, wrong size or checksum, or unreadable contents.
        """
        self.verify(record)
        try:
            return load_state(self.run_dir / record["path"])
        except Exception as exc:  # a verified file that does not unpickle: treat as corrupt
            raise CheckpointCorrupt(f"{record['path']}: unreadable ({exc})") from exc

    def verify(self, record: dict) -> None:
        """Check size and checksum without unpickling (cheap pre-flight on resume); the file
        is read in chunks, so a checkpoint of gigabytes needs no memory of its size."""
        try:
            sha, size = file_sha256(self.run_dir / record["path"])
        except OSError as exc:
            raise CheckpointCorrupt(f"{record['path']}: cannot read ({exc.strerror})") from exc
        if sha != record["sha256"]:
            raise CheckpointCorrupt(f"{record['path']}: checksum mismatch ({size} bytes, "
                                    f"expected {record.get('bytes', '?')}); truncated or corrupt")

    def prune(self, keep: set[str], written: list[str]) -> list[str]:
        """Delete the files in ``written`` (relative paths) that are not in ``keep``.

        Only files this run wrote are ever candidates, so nothing a user put there is touched.
        Returns the paths that remain (the new ``written``).
        """
        remaining = []
        for rel in written:
            if rel in keep:
                remaining.append(rel)
                continue
            try:
                (self.run_dir / rel).unlink(missing_ok=True)
            except OSError:
                remaining.append(rel)
        return remaining
