"""What the coordinator is told (events) and what it answers (commands): small frozen values.

Why values: the coordinator (:mod:`~pbtune.engines.core.coordinator`) decides and an executor
(Ray, simulated) executes; neither calls into the other. An executor turns actor results into
events, the coordinator turns events into commands, and the driver loop passes one to the other.
Being plain data, a sequence of events can be replayed against the coordinator in a unit test,
and every command it gave can be compared between executors.

State handles (``Handle``) are opaque to the coordinator: a Ray ``ObjectRef`` under the Ray
executor, the state object itself under the simulated one, or :class:`OnDisk` for a checkpoint
file the executor loads when the state is first needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Handle = Any  # an executor's reference to a trial state (ObjectRef, an in-process object, OnDisk,
#                Held)


@dataclass(frozen=True)
class OnDisk:
    """A trial state in a verified checkpoint file (``pbtune.store.checkpoints`` record)."""

    path: str
    sha256: str
    bytes: int
    iteration: int

    @classmethod
    def of(cls, record: dict[str, Any]) -> OnDisk:
        return cls(str(record["path"]), str(record["sha256"]), int(record["bytes"]),
                   int(record["iteration"]))

    def record(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes,
                "iteration": self.iteration}


@dataclass(eq=False)
class Held:
    """A trial state that stays on the worker that trained it (the large-state path).

    Why: a state of gigabytes (a transformer and its optimiser) cannot be copied into the
    object store after every segment. The worker keeps it live; this handle names it. The
    coordinator reads only ``worker`` (a lost worker takes its held states with it, unless a
    copy was already shared) and ``shared``; the executor makes the copy when a
    :class:`ShareState` asks for one (an exploit's donor) and frees it once every target that
    needed it has loaded it. Compared by identity: two handles are never the same state.
    """

    worker: int
    trial_id: str
    iteration: int
    shared: Any = None  # the executor's transferable copy (an ObjectRef), once one was made
    consumers: int = 0  # targets still to load ``shared`` (the copy is dropped at zero)

    def lost_with(self, worker: int) -> bool:
        """Whether losing ``worker`` loses this state (no copy of it exists elsewhere)."""
        return self.worker == worker and self.shared is None


def lost_with(handle: Handle, worker: int) -> bool:
    """Whether ``handle`` names a state that only ``worker`` held."""
    return isinstance(handle, Held) and handle.lost_with(worker)


@dataclass(frozen=True)
class Restore:
    """The state a trial's next segment starts from, and whose data-order RNG it keeps.

    Computed in one place (the coordinator) and applied in one place (the worker's
    :func:`~pbtune.engines.segment.load_trial`).

    Attributes:
        state: the state to load.
        include_rng: False on exploit: the target takes the donor's weights and optimiser but
            keeps its own data order.
        rng_from: with ``include_rng`` False, the target's own state, from which a worker that
            does not hold the target live takes its RNG (so which worker runs the target cannot
            change its results).
    """

    state: Handle
    include_rng: bool = True
    rng_from: Handle = None


# -- events (executor → coordinator) -----------------------------------------------------------
@dataclass(frozen=True)
class WorkerInfo:
    """A worker slot: ``ready`` once it has started, ``alive`` until retired or lost for good."""

    index: int
    node: str  # the node's IP (the ``node`` column of trials.csv)
    ready: bool = True
    alive: bool = True
    describe: dict[str, Any] = field(default_factory=dict, compare=False)  # for on_workers
    shape: str = "cpu:1"  # what the worker holds: ``gpu:0.5/cpu:1`` (``worker_shape`` column)
    precision: str = "fp32"  # what its trials train in (``precision`` column)

    def columns(self) -> dict[str, str]:
        """The columns every row this worker trains carries: where and how it ran."""
        return {"node": self.node, "worker_shape": self.shape, "precision": self.precision}


@dataclass(frozen=True)
class WorkersChanged:
    """The pool changed (start, adoption, nodes joined or left, a slot retired)."""

    workers: tuple[WorkerInfo, ...]
    journal: dict[str, Any] | None = None  # what changed, for the journal's membership line


@dataclass(frozen=True)
class SegmentFinished:
    """A segment ended (normally, early, or with a workload error in ``result``).

    ``result`` has ``rows`` (one per iteration), ``compute_s``, ``iteration``, ``status``
    (``"ok"``/``"error"``), ``error`` and ``best_iteration``; ``best`` is the state at
    ``best_iteration`` and ``snapshot`` the state at the segment's end (None on error).
    """

    worker: int
    trial_id: str
    result: dict[str, Any]
    best: Handle = None
    snapshot: Handle = None


@dataclass(frozen=True)
class SegmentLost:
    """A segment's worker died, or the state it was given was lost with its node."""

    worker: int
    trial_id: str
    reason: str  # the exception's class name
    message: str
    state_lost: bool  # the input state is gone (roll back to a checkpoint), the worker is not
    replaced: bool | None = None  # the worker was recreated (None: not tried, state_lost)


@dataclass(frozen=True)
class StopRequested:
    """Stop: ``interrupted`` (Ctrl-C: rewind to a consistent cut) or another reason."""

    reason: str


@dataclass(frozen=True)
class CheckpointWritten:
    """A checkpoint reached the disk (the roll-back point if its trial's state is lost)."""

    trial_id: str
    iteration: int
    file: OnDisk
    include_rng: bool
    config: dict[str, Any]
    rng_file: OnDisk | None = None  # with include_rng False: the trial's own state (its RNG)


@dataclass(frozen=True)
class TimePassed:
    """Nothing finished within the executor's wait; only the clock moved."""


Event = WorkersChanged | SegmentFinished | SegmentLost | StopRequested | CheckpointWritten | \
    TimePassed


# -- commands (coordinator → executor and sinks) ------------------------------------------------
@dataclass(frozen=True)
class RunSegment:
    """Run ``trial_id`` on ``worker`` up to ``target_iteration`` (evaluating every iteration)."""

    worker: int
    trial_id: str
    config: dict[str, Any]
    seed: int
    target_iteration: int
    restore: Restore | None = None  # None: the worker holds the trial live (or it starts fresh)
    drop_from: int | None = None  # a worker whose copy of the trial is obsolete (it moved)
    best_so_far: float | None = None  # the worker returns a state only for a better result
    # The handle of the state the segment starts from when it is still wanted (its trial was
    # released past a boundary not decided yet: it may become a donor there): a worker that
    # holds states keeps a copy of it for as long as the handle lives.
    pin: Handle = None


@dataclass(frozen=True)
class ShareState:
    """``state`` will be loaded by another trial (an exploit's donor): make it transferable
    now, before its holder trains the trial on. A no-op for states already in the object store
    or on disk; a :class:`Held` state is copied off its worker once, however many targets ask
    (each command counts one more target that must load it before the copy is freed)."""

    state: Handle


@dataclass(frozen=True)
class Checkpoint:
    """Write ``state`` as the trial's checkpoint at ``iteration``.

    ``role`` is ``"state"`` (the trial's own state: roll-back point, resume point) or
    ``"exploit"`` (the donor state an exploited trial has not started from yet; a cut then also
    names the trial's own checkpoint at that iteration, whose RNG it keeps).
    """

    trial_id: str
    iteration: int
    state: Handle
    include_rng: bool
    config: dict[str, Any]
    role: str = "state"


@dataclass(frozen=True)
class WriteCut:
    """Journal a resume point once its checkpoints are on disk (``pbtune.store`` formats)."""

    cut: dict[str, Any]


@dataclass(frozen=True)
class SaveBest:
    """Persist the best result's state (``checkpoints/best.pt``)."""

    state: Handle
    meta: dict[str, Any]


@dataclass(frozen=True)
class WriteError:
    """Append a failure's text to ``trials/<trial_id>/error.txt``."""

    trial_id: str
    text: str


@dataclass(frozen=True)
class Journal:
    """Append one event to the run's journal (``sync``: fsync it, a decision point)."""

    record: dict[str, Any]
    sync: bool = False


@dataclass(frozen=True)
class Notify:
    """Call ``hook`` on every callback (``on_result``, ``on_exploit``, ...) with ``args``."""

    hook: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class AbandonSegments:
    """Stop these workers' segments now, whatever they are doing (a hung or very long
    iteration past the time budget's grace): their results will never be taken."""

    workers: tuple[int, ...]


@dataclass(frozen=True)
class StopSegments:
    """Running segments end after their current iteration; no further segment starts."""


Command = RunSegment | Checkpoint | WriteCut | SaveBest | WriteError | Journal | Notify | \
    StopSegments | AbandonSegments | ShareState
