"""Copies of held states taken into memory the worker reuses.

Why: a worker that holds large states copies them often — a best candidate at each improvement,
a checkpoint, an exploit's donor, the start of a trial released early — and each copy used to be
new memory. On this project's VMs memory freed is handed back to the host within seconds and
every page of the next copy is faulted in again: 4.4 s for a 1.5 GB state against 0.1 s for the
same copy into memory kept (``docs/benchmarks.md``). Real clusters pay less, but a page fault per
4 KB is never free, and device-to-host copies of a GPU model gain the same way.

A copy handed out is a :class:`HeldCopy` (a dict that pickles as a plain dict, so checkpoint
files do not name it). When the last reference to it goes — written to disk, serialised into
the object store by Ray, unpinned — a finalizer hands its arrays back; the next copy writes into
them (:func:`pbtune.store.copies.fill`). At most ``limit`` copies wait unused, so a worker keeps
``limit`` states of memory beyond its live trials and copies in flight; ``limit=0`` turns reuse
off. A copy is kept only while the node has ``reserve`` (a share of its memory, 20 %) available
besides: kept copies must never be what pushes a node into reclaim or Ray's OOM killer (95 %).
No reference counting by hand, so a consumer that keeps a copy longer is always safe.

:meth:`CopyBuffers.prewarm` makes the first ``limit`` of them in a background thread once a
workload's layout is known, so no copy a run waits for pays for new memory: the pages are
written while the worker trains (on a GPU worker its CPU idles; on a CPU worker it takes a core
for as long as writing the pages takes, once).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from pbtune.store.copies import blank, fill, layout, state_nbytes


class HeldCopy(dict):  # type: ignore[type-arg]
    """A state copy whose arrays return to :class:`CopyBuffers` when it is dropped."""

    __slots__ = ("__weakref__",)

    def __reduce__(self) -> tuple[Any, ...]:  # a plain dict on disk and in the object store
        return (dict, (dict(self),))


class CopyBuffers:
    """Hands out copies of workloads' states, reusing the arrays of copies nobody holds."""

    def __init__(self, limit: int = 2, reserve: float = 0.2) -> None:
        self.limit = limit  # copies kept unused at most (states of memory)
        self.reserve = reserve  # share of the node's memory that must stay available
        self._lock = threading.Lock()  # guards _free, made, _warming; never held while copying
        self._free: list[dict[str, Any]] = []
        self.reused = 0  # copies taken into kept memory
        self.dropped = 0  # copies not kept (node short of memory, or limit copies kept)
        self.made = 0  # copies whose memory exists (in use or kept), made or prewarmed
        self.prewarmed = 0  # of them, made in the background by prewarm()
        self._warming: threading.Thread | None = None

    def copy(self, workload: Any) -> Any:
        """A copy of ``workload``'s state, as ``get_state()`` returns it, that nobody else
        changes. Only while the workload is not training (the caller's lock sees to it)."""
        view = getattr(workload, "state_view", None)
        if self.limit <= 0 or not callable(view):
            return workload.get_state()
        live = view()
        if not isinstance(live, dict):
            return workload.get_state()
        with self._lock:
            spare = self._free.pop() if self._free else None
            self.made += spare is None
        inner = fill(spare, live)
        del live
        self.reused += spare is not None
        out = HeldCopy(inner)
        # `inner` shares out's values; the finalizer keeps it (and so the arrays) for reuse.
        weakref.finalize(out, self._give_back, inner).atexit = False  # at exit: nothing to keep
        return out

    def prewarm(self, workload: Any) -> threading.Thread | None:
        """Make, in a background thread, the copies' memory this worker will want (up to
        ``limit`` in all), laid out as ``workload``'s state now is. Call it from the thread that
        trains ``workload``, between segments: only shapes are read. Returns the thread started,
        or ``None`` (nothing to do, already warming, reuse off, or the node short of memory)."""
        view = getattr(workload, "state_view", None)
        if self.limit <= 0 or not callable(view):
            return None
        with self._lock:
            wanted = self.limit - self.made
            if wanted <= 0 or (self._warming is not None and self._warming.is_alive()):
                return None
            live = view()
            if not isinstance(live, dict):
                return None
            shape, size = layout(live), state_nbytes(live)
            del live
            self.made += wanted  # claimed now: copies taken meanwhile make their own
            thread = threading.Thread(target=self._warm, args=(shape, size, wanted),
                                      name="pbtune-prewarm", daemon=True)
            self._warming = thread
        thread.start()
        return thread

    def _warm(self, shape: Any, size: int, count: int) -> None:
        kept = 0
        try:
            while kept < count and self._room(size):
                inner = blank(shape)
                with self._lock:
                    if len(self._free) >= self.limit:
                        return
                    self._free.append(inner)
                    self.prewarmed += 1
                kept += 1
        finally:  # what was claimed and not made (short of memory, or it failed) is unclaimed
            with self._lock:
                self.made -= count - kept

    def _give_back(self, inner: dict[str, Any]) -> None:
        if not self._room():  # free it: the node needs its memory more
            self._forget()
            return
        with self._lock:
            if len(self._free) < self.limit:
                self._free.append(inner)
                return
        self._forget()

    def _forget(self) -> None:
        with self._lock:
            self.dropped += 1
            self.made -= 1

    def _room(self, more: int = 0) -> bool:
        """Whether the node has ``reserve`` available with the copy kept (it is allocated now:
        keeping it takes nothing more; dropping it would give its memory back) and ``more``
        bytes allocated besides (a copy prewarm would make)."""
        import psutil

        memory = psutil.virtual_memory()
        return memory.available - more >= self.reserve * memory.total

    def clear(self) -> None:
        """Forget the kept copies (their memory goes back)."""
        with self._lock:
            self.made -= len(self._free)
            self._free.clear()

    def kept(self) -> int:
        with self._lock:
            return len(self._free)
