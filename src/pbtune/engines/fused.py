"""A worker's K trials, trained an iteration at a time as fused groups (no Ray here).

Why: with ``resources.members_per_worker: K`` a worker is K lanes to the coordinator, which
still decides per trial and sends each lane its own segments. The lanes' segments arrive as
separate calls; this runner collects them and trains them in rounds: each round, every active
segment trains one iteration, members that can train as one model
(:func:`pbtune.workloads.fusion.fusion_key`) as a fused group, the rest one after the other.
Each segment keeps its own bookkeeping (:class:`~pbtune.engines.segment.Segment`), so rows,
best states, stops and errors are per trial exactly as unfused.

Segments of a group arrive a few milliseconds apart (the coordinator answers each finished lane
separately): after a segment starts or ends, a round waits up to ``gather_s`` for the other
lanes to fill before it trains. ``fuse: auto`` times the members one after the other and as a
group on the first rounds of each group kind and keeps the faster (on a CPU whose convolution
kernels already run at the core's peak, the grouped kernels can be slower); ``always`` and
``never`` decide without timing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pbtune.engines.segment import Segment
from pbtune.workloads.iteration import iteration_result, run_iteration

FUSE_MODES = ("auto", "always", "never")
_WARM, _TIMED = 1, 1  # rounds per way: untimed warm-up, then timed


@dataclass
class _Choice:
    """``auto``: how one group kind has trained so far, and the way it keeps."""

    rounds: list[tuple[bool, float]] = field(default_factory=list)  # (fused, s per member)
    fused: bool | None = None


class FusedRunner:
    """Trains the segments :meth:`run` is given (from up to ``lanes`` threads at once) in rounds.

    Args:
        lanes: K, the segments it may hold at once (what it waits for to fill a group).
        fuse: ``auto``, ``always`` or ``never`` (see the module docstring).
        gather_s: the longest a round waits for lanes to fill after a segment started or ended.
        after_round: called on the training thread after each round with the ids of the trials
            still training (a GPU worker parks the others' states on the host there).
    """

    def __init__(self, lanes: int, fuse: str = "auto", gather_s: float = 0.05,
                 after_round: Callable[[set[str]], None] | None = None) -> None:
        if fuse not in FUSE_MODES:
            raise ValueError(f"fuse must be one of {FUSE_MODES}, got {fuse!r}")
        self.lanes = lanes
        self.fuse = fuse
        self.gather_s = gather_s
        self.after_round = after_round
        self._cond = threading.Condition()
        self._pending: list[tuple[Segment, Future[Any]]] = []
        self._active: list[tuple[Segment, Future[Any]]] = []
        self._changed = True
        self._thread: threading.Thread | None = None
        self._choices: dict[Any, _Choice] = {}
        self.fused_rounds = 0  # group iterations trained fused (tests, notes)

    def run(self, segment: Segment) -> tuple[dict[str, Any], Any, Any]:
        """Train ``segment`` with the others; returns what :func:`run_segment` would."""
        future: Future[Any] = Future()
        with self._cond:
            self._pending.append((segment, future))
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="pbtune-fused",
                                                daemon=True)
                self._thread.start()
        return future.result()

    # -- the training thread -------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                self._once()
            except Exception as exc:  # a fault here must not leave K lanes waiting forever:
                with self._cond:  # every segment in hand fails with it; the runner goes on
                    failed, self._active = self._active, []
                for segment, future in failed:
                    if not future.done():
                        future.set_result(segment.fail(exc))

    def _once(self) -> None:
        """Take new segments, train one round, hand back the segments that ended."""
        for segment, future in self._take():
            try:
                segment.begin()
            except Exception as exc:  # its state could not be loaded: it fails alone
                future.set_result(segment.fail(exc))
                continue
            with self._cond:
                self._active.append((segment, future))
        self._round([s for s, _ in self._active if s.active()])
        done = [(s, f) for s, f in self._active if not s.active()]
        for segment, future in done:
            try:
                future.set_result(segment.finish())
            except Exception as exc:  # get_state raised
                future.set_result(segment.fail(exc))
        with self._cond:
            self._active = [a for a in self._active if a not in done]
            self._changed = self._changed or bool(done)
        if self.after_round is not None:
            self.after_round({s.trial_id for s, _ in self._active})

    def _take(self) -> list[tuple[Segment, Future[Any]]]:
        """New segments; waits for one when idle, and briefly for lanes to fill after a change."""
        with self._cond:
            while not self._pending and not self._active:
                self._cond.wait()
            if self._changed:
                deadline = time.monotonic() + self.gather_s
                while len(self._pending) + len(self._active) < self.lanes:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            new, self._pending = self._pending, []
            self._changed = bool(new)
            return new

    def _round(self, segments: list[Segment]) -> None:
        """One iteration of every segment given: fusible ones by group, the rest alone."""
        groups: dict[Any, list[Segment]] = {}
        for segment in segments:
            try:
                key = _key(segment.workload)
            except Exception as exc:  # the workload's fusion() raised: it fails alone
                segment.fail(exc)
                continue
            groups.setdefault(key if key is not None else id(segment), []).append(segment)
        for key, group in groups.items():
            if len(group) > 1 and self._fuse(key, len(group)):
                self._fused(key, group)
            else:
                start = time.perf_counter()
                for segment in group:
                    self._single(segment)
                self._timed(key, group, False, start)

    def _single(self, segment: Segment) -> None:
        try:
            segment.record(run_iteration(segment.workload, segment.metric))
        except Exception as exc:  # user code failed: this trial errors
            segment.fail(exc)

    def _fused(self, key: Any, group: list[Segment]) -> None:
        from pbtune.workloads.fusion import train_and_evaluate

        start = time.perf_counter()
        try:
            outs = train_and_evaluate([s.workload for s in group])
        except Exception as exc:  # every member's state may be half-trained: all fail
            for segment in group:
                segment.fail(exc)
            return
        self.fused_rounds += 1
        for segment, (train, evaluated) in zip(group, outs, strict=True):
            try:
                segment.record(iteration_result(segment.workload, segment.metric, train,
                                                evaluated, start))
            except Exception as exc:  # get_state of a new best raised
                segment.fail(exc)
        self._timed(key, group, True, start)

    # -- auto: fused or one after the other ----------------------------------------------------
    def _fuse(self, key: Any, size: int) -> bool:
        if self.fuse != "auto":
            return self.fuse == "always"
        choice = self._choices.setdefault(_kind(key), _Choice())
        if choice.fused is not None:
            return choice.fused
        return len(choice.rounds) >= _WARM + _TIMED  # first one after the other, then fused

    def _timed(self, key: Any, group: list[Segment], fused: bool, start: float) -> None:
        choice = self._choices.get(_kind(key))
        if choice is None or choice.fused is not None or len(group) < 2:
            return
        choice.rounds.append((fused, (time.perf_counter() - start) / len(group)))
        if len(choice.rounds) < 2 * (_WARM + _TIMED):
            return
        alone = min(t for f, t in choice.rounds[_WARM:_WARM + _TIMED] if not f)
        together = min(t for f, t in choice.rounds[2 * _WARM + _TIMED:] if f)
        choice.fused = together < alone
        print(f"note: {len(group)} {type(group[0].workload).__name__} trials fused took "
              f"{together / alone:.2f}x the time of training them one after the other here; "
              f"{'fusing them' if choice.fused else 'training them one after the other'} "
              "(resources.fuse: always or never decides without timing)", file=sys.stderr)


def members_for(cfg: Any, workers: int, fusible: bool) -> int:
    """Lanes per worker for a run on ``workers`` workers: ``members_per_worker``, but no more
    than the population needs there (more would let some workers hold every trial while others
    idle); one line on stderr says when that, or a workload that cannot fuse, changes things."""
    from pbtune.cluster.specs import lanes_needed

    asked = cfg.resources.members_per_worker
    k = lanes_needed(asked, cfg.population, workers)
    if k < asked:
        print(f"note: {cfg.population} trials on {workers} workers need {k} members per worker, "
              f"not members_per_worker = {asked}; each worker takes {k}", file=sys.stderr)
    if k > 1 and not fusible:
        print(f"note: {cfg.workload} does not fuse (fusible = False): each worker trains its "
              f"{k} members one after the other", file=sys.stderr)
    return k


def _kind(key: Any) -> Any:
    """What ``auto`` decides once for: the workload class, optimiser kind and shapes of a
    fusion key, not its batch size or epoch position (with ``steps_per_iteration`` the
    position changes every round: a decision per key would never be reached, and the
    table would grow with the run)."""
    return (key[0], key[2], key[3]) if isinstance(key, tuple) and len(key) == 4 else key


def _key(workload: Any) -> Any:
    """The fusion key, importing torch's fusion code only for workloads that opted in."""
    if not getattr(workload, "fusible", False):
        return None
    from pbtune.workloads.fusion import fusion_key

    return fusion_key(workload)
