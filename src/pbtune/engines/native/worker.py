"""The persistent worker actor of the native engine.

Why: Ray Tune's PBT keeps one actor per trial and, when the population exceeds the slots, pauses a
trial by checkpointing it to storage and stopping its actor. Here a worker is created once per
resource slot and trials are *data*: the worker keeps the live workload objects of the trials it
ran last, so continuing a trial costs nothing, and a trial that moves (work stealing, exploit) moves
as a state dict through Ray's object store, never through a file on disk.

A worker runs its training methods on one thread, so tasks one caller submits run in submission
order. :meth:`Worker.request_stop` runs on a second thread (Ray concurrency group ``control``),
so it can reach a segment that is running; copies and writes of held states (the large-state
path, :mod:`pbtune.engines.native.held`) run on a third (``transfer``) and waits for writes on
a fourth (``wait``), so neither waits for training nor stops it. The segment itself is
:func:`pbtune.engines.segment.run_segment`, which the simulated executor runs too.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray

from pbtune.engines.fused import FusedRunner
from pbtune.engines.native.held import HeldStates, Live, holds_states, materialize, state_nbytes
from pbtune.engines.native.usage import resource_usage
from pbtune.engines.node_options import resolve_here
from pbtune.engines.segment import Segment, park, run_segment


class Worker:
    """Runs segments of trials on one resource slot; holds the live workloads of its trials.
    (:class:`~pbtune.engines.native.gang.GangWorker` is rank 0, or another rank, of a gang.)

    Args:
        workload: registry name or ``file.py:Class`` spec of the workload.
        options: fixed workload options (resolved config ``options``).
        data: the node-shared data (an ObjectRef passed at top level is resolved by Ray, so numpy
            arrays arrive as zero-copy views into the object store).
        index: the worker's slot number (for logs and the timeline).
        device: torch device for this worker (``"cpu"`` or ``"cuda"``).
        threads: torch intra-op threads (1 per CPU of the slot; None leaves torch's default).
        shape: the slot's resources as a label (``gpu:0.5/cpu:1``), for rows and the status.
        gpu_share: the slot's share of its GPU: the most device memory its process may take.
        live_trials: on a GPU, trials kept resident between segments (the rest are parked on
            the host, see :func:`pbtune.engines.segment.park`); None: no limit.
        deterministic: cuDNN/torch deterministic algorithms (``deterministic`` in the config).
        precision: ``resources.precision`` for this worker's kind (``auto`` resolved at the GPU).
        state_on_worker: ``resources.state_on_worker``: ``always``/``never`` keep trial states
            on this worker (no snapshot in the object store after a segment), ``auto`` follows
            the workload's ``large_state`` flag, else the first state's size against
            ``large_state_mb`` (see held.py); ``state_buffers``: copies kept for reuse.
        members: K (``resources.members_per_worker``): K lanes whose segments train together
            (:mod:`pbtune.engines.fused`, ``fuse`` its mode); states go to the object store.
    """

    def __init__(
        self,
        workload: str,
        options: Mapping[str, Any],
        data: Any,
        index: int,
        device: str = "cpu",
        threads: int | None = None,
        *,
        shape: str = "cpu:1",
        precision: str = "fp32",
        gpu_share: float = 0.0,
        live_trials: int | None = None,
        deterministic: bool = False,
        state_on_worker: str = "auto", large_state_mb: float = 512.0, state_buffers: int = 2,
        members: int = 1, fuse: str = "auto",
    ) -> None:
        from pbtune.workloads import get
        from pbtune.workloads.precision import resolve, workload_kwargs

        self.cls = get(workload)
        uses_torch = "torch" in sys.modules  # the workload's module imported it
        if uses_torch:
            import torch

            from pbtune.workloads._torch_utils import limit_gpu_memory, set_determinism

            if device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError(
                    "Ray gave this worker a GPU but torch sees no CUDA device (a CPU-only torch "
                    "build, or CUDA_VISIBLE_DEVICES emptied); install a CUDA build of torch on "
                    "this node or set resources.gpus_per_trial: 0")
            set_determinism(deterministic)
            if device == "cuda":
                limit_gpu_memory(gpu_share)
            if threads:
                torch.set_num_threads(threads)
            # The first optimiser a process builds imports torch._dynamo (about 3 s here): pay it
            # at start-up, while the driver decodes the data, not inside the first segment.
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        elif threads:
            # A torch-free workload (pbt-toy) must not pay torch's import here; should it import
            # torch later, torch reads its thread count from this variable.
            os.environ["OMP_NUM_THREADS"] = str(threads)
        # Parking budget: device memory is torch's; a torch-free workload (the toy) has none to
        # free, and importing torch to empty its cache would stall the worker for seconds.
        self.live_trials = live_trials if device == "cuda" and uses_torch else None
        self.shape = shape
        kind = "gpu" if device == "cuda" else "cpu"
        self.precision = resolve(getattr(self.cls, "precisions", ("fp32",)), precision, kind)
        self._kwargs = workload_kwargs(self.precision)
        # Per-node options (``slowdown: {"slow": 3.0}``) become plain values for this node here,
        # so workloads never see a mapping nor need Ray (see node_options).
        self.options = resolve_here(options)
        self.data, self.index, self.device = data, index, device
        # Set by request_stop (from the driver, on the control thread); read between iterations.
        # Once set it stays set: a stopped run submits no further segments.
        self._stop = threading.Event()
        self.trials: dict[str, Any] = {}  # trial id → live workload object
        self.before_iteration: Any = None  # a gang's rank 0 signals its other ranks here
        self.held = HeldStates(self.trials, buffers=state_buffers)
        self.fused = FusedRunner(members, fuse, after_round=self._park_beyond_budget) \
            if members > 1 else None  # fused members' states go to the store: never held
        self.holds = False if self.fused else holds_states(state_on_worker, self.cls)
        self.large_state_bytes = large_state_mb * 2**20
        import psutil

        self.process = psutil.Process()
        psutil.cpu_percent(interval=None)  # prime: the first reading is meaningless

    @ray.method(concurrency_group="control")
    def request_stop(self) -> None:
        """End running and later segments after their current iteration (threshold, Ctrl-C).

        Why a flag on each worker rather than a shared signal actor: no third process competes
        with the workers for CPU at start-up, checking it costs nothing per iteration, and no
        node's departure can take a signal the other workers depend on with it.
        """
        self._stop.set()

    def make(self, config: Mapping[str, Any], seed: int) -> Any:
        """A new workload of a trial here (its segment then loads any state it is given)."""
        return self.cls(config, data=self.data, options=self.options, seed=seed,
                        device=self.device, **self._kwargs)

    def set_data(self, data: Any) -> None:
        """Receive the node-shared data (an ObjectRef argument arrives as zero-copy arrays)."""
        self.data = data

    def info(self, lane: int | None = None) -> dict[str, Any]:
        """Where this worker (as slot ``lane`` of a fused one) runs, for the status table and
        the timeline."""
        ctx = ray.get_runtime_context()
        return {
            "index": self.index if lane is None else lane,
            "node_id": ctx.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "shape": self.shape,
            "device": self.device,
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],  # what CUDA_VISIBLE_DEVICES shows
            "precision": self.precision,
        }

    # -- the large-state path (see held.py): copies and writes off the training thread ---------
    @ray.method(concurrency_group="transfer", num_returns=2)
    def export(self, trial_id: str, iteration: int) -> tuple[bool, Any]:
        """``(done, state)``: the trial's state at ``iteration`` (CPU tensors) for another worker.

        ``done`` is a small object a later segment of the trial here waits for (so it cannot
        change the state before it is copied) without fetching the state itself.
        """
        return True, self.held.copy(trial_id, iteration)

    @ray.method(concurrency_group="transfer")
    def save(self, trial_id: str, iteration: int, path: str) -> int:
        """Copy the trial's state at ``iteration`` now; write it to ``path`` in the background.
        Returns a token for :meth:`saved`."""
        return self.held.save(self.held.copy(trial_id, iteration), Path(path))

    @ray.method(concurrency_group="transfer")
    def save_state(self, state: Any, path: str) -> int:
        """Write a state given here (a shared copy, resolved by Ray) to ``path``; a token."""
        return self.held.save(state, Path(path))

    @ray.method(concurrency_group="wait")
    def saved(self, token: int) -> dict[str, Any]:
        """``{"sha256", "bytes"}`` of a file :meth:`save` wrote (waits for the write)."""
        return self.held.saved(token)

    @ray.method(concurrency_group="wait")
    def finish_writes(self) -> None:
        """Write what is queued, then stop the writer (the run is ending)."""
        self.held.close()

    @ray.method(concurrency_group="wait")
    def remove_file(self, token: int, path: str) -> None:
        """Delete a file :meth:`save` wrote (or is writing) that nobody wants (a best candidate
        that was not the best): after its write, so no half file is left behind."""
        try:
            self.held.saved(token)
        except Exception:  # already waited for, or the write failed: nothing to wait for
            pass
        Path(path).unlink(missing_ok=True)

    @ray.method(concurrency_group="transfer")
    def drop(self, trial_id: str, keep_at: int | None = None) -> bool:
        """Forget a trial that moved; ``keep_at``: keep its state there (pinned, uncopied)."""
        self.held.drop(trial_id, keep_at)
        return True

    @ray.method(concurrency_group="transfer")
    def unpin(self, trial_id: str, iteration: int) -> None:
        """The pinned state is no longer wanted (its handle is gone from the driver)."""
        self.held.unpin(trial_id, iteration)

    @ray.method(num_returns=3)
    def run(
        self,
        trial_id: str,
        config: Mapping[str, Any],
        seed: int,
        target_iteration: int,
        *,
        state: Mapping[str, Any] | None = None,
        include_rng: bool = True,
        rng_from: Mapping[str, Any] | None = None,
        metric: str,
        mode: str,
        threshold: float | None = None,
        best_so_far: float | None = None,
        deadline: float | None = None,
        pin_start: bool = False,
        best_to: str | None = None,
        after: Any = None,
    ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        """Train one trial up to ``target_iteration``, evaluating after every iteration.

        Stops early when its metric reaches ``threshold``, its loss or metric stops being finite,
        the clock passes ``deadline`` (epoch s) or :meth:`request_stop` was called.

        Returns:
            ``(result, best_state, snapshot)`` as three objects, so the driver keeps only
            references to the states. ``result`` has ``rows`` (one dict per iteration),
            ``compute_s`` (seconds inside train + evaluate), ``iteration``, ``status`` (``"ok"``,
            ``"error"``) and ``error``; ``best_state`` is the trial's state at its iteration that
            beat ``best_so_far`` (latest such), else ``None``; ``snapshot`` is the state at the end
            (``None`` on error): the driver keeps a reference as the trial's recovery point if this
            worker dies, as the donor state on exploit, and writes it as a checkpoint at multiples
            of ``checkpoint_interval`` (a get_state per segment, a state per trial in the store).

            A worker that holds its states (:attr:`holds`) returns no snapshot and sets
            ``result["held"]``; ``pin_start`` keeps a copy of the state the segment starts from
            (it may be a donor at a boundary not decided yet); its best state is written to
            ``best_to`` in the background (``result["best_token"]`` for :meth:`saved`).
            ``after`` (resolved by Ray, unused) is the last copy or drop of this trial queued
            here: the segment starts once it is done.
        """
        holds = self.holds
        self.held.begin(trial_id, pin_start and holds is not False)
        try:
            args = (self.trials, trial_id, lambda: self.make(config, seed), config,
                    target_iteration)
            kwargs = dict(
                state=materialize(state), include_rng=include_rng, rng_from=materialize(rng_from),
                metric=metric, mode=mode, threshold=threshold, best_so_far=best_so_far,
                deadline=deadline, stop=self._stop.is_set,
                extra=lambda: resource_usage(self.process), snapshot=holds is not True,
                copy_held_best=False)  # copied later, if still wanted (held.py)
            out = self.fused.run(Segment(*args, **kwargs)) if self.fused else run_segment(
                *args, before_iteration=self.before_iteration, **kwargs)
        finally:
            self.held.end(prewarm=holds is True)
        if holds is None and out[2] is not None:  # decided once, by the first state's size
            self.holds = state_nbytes(out[2]) > self.large_state_bytes
        if holds:
            result = out[0]
            result["held"] = True
            if result.get("best_iteration") is not None and best_to is not None:
                result["best_token"] = self.held.save(
                    Live(trial_id, result["best_iteration"]), Path(best_to),
                    best=(result["best_value"], mode))
                result["best_path"] = best_to
            out = (result, None, None)
        if not self.fused:  # a fused worker parks between its rounds (after_round)
            self._park_beyond_budget()
        return out

    def _park_beyond_budget(self, keep: Any = ()) -> None:
        """On a GPU: park trials beyond ``live_trials`` (not ``keep``, training now)."""
        if self.live_trials is not None and park(self.trials, self.live_trials, keep):
            import torch

            torch.cuda.empty_cache()


RemoteWorker = ray.remote(concurrency_groups={"control": 1, "transfer": 1, "wait": 1})(Worker)
