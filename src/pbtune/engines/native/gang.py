"""A slot of W worker processes that train one trial together (``resources.workers_per_trial``).

Why: a model too large or too slow for one process trains data-parallel, as the original SLURM
system did with W workers of Gw GPUs per trial. Trials stay data: a gang is one slot, runs any
trial's segment, and keeps its trials live between segments like a single worker.

How: the pool reserves the gang's W bundles in one placement group (one node by default,
``gang_placement: spread`` across nodes) and starts one :class:`GangWorker` per bundle; rank 0
forms one ``torch.distributed`` group (gloo on CPU, NCCL on GPU, plus a gloo group for control)
that lives as long as the gang. The driver talks to rank 0 only, with the single worker's API:
rank 0 passes each segment's trial, config and state to the other ranks (:meth:`follow`), and
before each iteration broadcasts "one more" (then "done"), so every rank trains exactly the
iterations rank 0 decides (threshold, deadline, stop and errors are decided once, on rank 0;
only rank 0 evaluates). Exploit and checkpoint states come from rank 0 (replicas are equal, see
:mod:`pbtune.workloads.distributed`) and are loaded on every rank.

A gang is lost as a whole: a rank that dies or raises ends its gang's collectives (gloo reports a
closed peer at once), rank 0 then ends its own process, and the driver sees the lost worker it
knows how to recover from: the pool rebuilds the gang, the trial reruns its segment from its
last state. A rank's exception is printed in its Ray log.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import traceback
from collections.abc import Mapping
from typing import Any

import ray

from pbtune.engines.native.held import FileState, materialize
from pbtune.engines.native.worker import Worker
from pbtune.engines.segment import load_trial

GANG_TIMEOUT_S = 1800.0  # s: the longest a rank waits in a collective (rank 0 evaluating)


def free_port() -> int:
    """A TCP port free on this node now (the gang's rendezvous)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class GangWorker(Worker):
    """One rank of a gang; rank 0 is the slot's worker as the driver sees it."""

    def __init__(self, *args: Any, rank: int = 0, world_size: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rank, self.world_size = rank, world_size
        self.followers: list[Any] = []
        self._control: Any = None  # the gloo group the go/done signals travel on

    # -- forming the group -----------------------------------------------------------------------
    def join(self, address: str, port: int) -> int:
        """Join the gang's process group (every rank, rank 0 included); returns the rank."""
        import torch.distributed as dist

        backend = "nccl" if self.device == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=self.rank,
                                world_size=self.world_size,
                                timeout=datetime.timedelta(seconds=GANG_TIMEOUT_S))
        self._control = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
        return self.rank

    def form(self, followers: list[Any]) -> list[int]:
        """Rank 0: form the gang with ``followers`` (ranks 1..W-1, in order)."""
        self.followers = list(followers)
        address, port = ray.util.get_node_ip_address(), free_port()
        try:
            refs = [f.join.remote(address, port) for f in self.followers]
            return [self.join(address, port), *ray.get(refs, timeout=GANG_TIMEOUT_S)]
        except Exception as exc:  # a rank could not start or join: the gang never existed
            self._die(f"could not form ({type(exc).__name__}: {exc})")
            raise

    # -- rank 0 ----------------------------------------------------------------------------------
    @ray.method(num_returns=3)
    def run(self, trial_id: str, config: Mapping[str, Any], seed: int, target_iteration: int,
            **kwargs: Any) -> tuple[dict[str, Any], Any, Any]:
        """:meth:`Worker.run` on every rank: rank 0 decides, the others follow."""
        shared = {k: _share(kwargs.get(k)) for k in ("state", "rng_from")}
        refs = [f.follow.remote(trial_id, dict(config), seed, include_rng=kwargs.get(
            "include_rng", True), **shared) for f in self.followers]
        self.before_iteration = lambda: self._signal(1)
        try:
            out = Worker.run(self, trial_id, config, seed, target_iteration, **kwargs)
        except BaseException as exc:  # outside the segment's own error handling: the other
            # ranks may wait for a signal that never comes, so the gang ends
            self._die(f"rank 0 failed outside its segment ({type(exc).__name__}: {exc})")
            raise
        finally:
            self.before_iteration = None
        problem = self._end(refs, out[0])
        if problem is not None:
            self._die(problem)
        if out[0]["status"] != "ok":  # rank 0 forgot the trial: so do the others
            self._drop_others(trial_id)
        return out

    def _end(self, refs: list[Any], result: Mapping[str, Any]) -> str | None:
        """Tell the ranks the segment is done and wait for them; what broke the gang, if so."""
        try:
            self._signal(0)
            ends = ray.get(refs, timeout=GANG_TIMEOUT_S)
        except Exception as exc:  # a rank died or raised: the group is unusable
            last = (str(exc).strip().splitlines() or [""])[-1]
            return f"{type(exc).__name__}: {last}"
        if result["status"] == "ok" and any(end != result["iteration"] for end in ends):
            return f"ranks out of step: rank 0 at {result['iteration']}, the others at {ends}"
        return None

    def _die(self, problem: str) -> None:
        """End the gang: the driver recovers it as a lost worker (pool.replace rebuilds it)."""
        print(f"pbtune gang of worker {self.index}: {problem}; ending the gang", file=sys.stderr,
              flush=True)
        for f in self.followers:
            ray.kill(f)
        os._exit(1)

    def _signal(self, go: int) -> None:
        import torch
        import torch.distributed as dist

        dist.broadcast(torch.tensor([go]), src=0, group=self._control)

    @ray.method(concurrency_group="transfer")
    def drop(self, trial_id: str, keep_at: int | None = None) -> bool:
        """Forget a trial on every rank (the others first: a later segment waits for this)."""
        self._drop_others(trial_id)
        return Worker.drop(self, trial_id, keep_at)

    def _drop_others(self, trial_id: str) -> None:
        ray.get([f.drop.remote(trial_id) for f in self.followers])

    # -- the other ranks -------------------------------------------------------------------------
    def follow(self, trial_id: str, config: Mapping[str, Any], seed: int, *, state: Any = None,
               include_rng: bool = True, rng_from: Any = None) -> int:
        """Train ``trial_id`` one iteration each time rank 0 says so; its iteration at the end.

        An exception ends this process: rank 0's collectives fail at once, and the gang is
        rebuilt (a rank that stays alive but stops would leave rank 0 waiting in a collective).
        """
        try:
            workload = load_trial(self.trials, trial_id, lambda: self.make(config, seed), config,
                                  materialize(state), include_rng, materialize(rng_from))
            while self._receive():
                workload.train(1)
            self._park_beyond_budget()
            return int(workload.iteration)
        except BaseException:
            print(f"pbtune gang rank {self.rank}, trial {trial_id}:\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
            os._exit(1)

    def _receive(self) -> bool:
        import torch
        import torch.distributed as dist

        flag = torch.zeros(1, dtype=torch.int64)
        dist.broadcast(flag, src=0, group=self._control)
        return bool(flag.item())

    def replica_state(self, trial_id: str) -> Any:
        """This rank's copy of a live trial's state (tests and checks: replicas are equal)."""
        return self.trials[trial_id].get_state()

    def replica_states(self, trial_id: str) -> list[Any]:
        """Rank 0: every rank's copy of a live trial's state, in rank order."""
        return [self.replica_state(trial_id),
                *ray.get([f.replica_state.remote(trial_id) for f in self.followers])]


def _share(state: Any) -> Any:
    """A state rank 0 was given, as the other ranks get it: a checkpoint each reads itself, or
    one copy in the object store that they all map."""
    if state is None or isinstance(state, FileState):
        return state
    return ray.put(state)


RemoteGangWorker = ray.remote(concurrency_groups={"control": 1, "transfer": 1, "wait": 1})(
    GangWorker)


def start_gang(spec: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The W ranks of a gang in one placement group; rank 0 forms their process group.
    Returns (placement group, ranks in order)."""
    from pbtune.cluster.placement import bundle_options, gang_group

    group = gang_group(spec)
    ranks = [RemoteGangWorker.options(**bundle_options(group, r, spec)).remote(
        *args, rank=r, world_size=spec.ranks, **kwargs) for r in range(spec.ranks)]
    ranks[0].form.remote(ranks[1:])  # before info(): a started gang is a formed one
    return group, ranks


def end_gang(group: Any, followers: list[Any]) -> None:
    """Kill a gang's other ranks and free its placement group (rank 0: the caller's)."""
    from ray.util.placement_group import remove_placement_group

    for handle in followers:
        ray.kill(handle)
    if group is not None:
        try:
            remove_placement_group(group)
        except Exception:  # Ray already gone
            pass
