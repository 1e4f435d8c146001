"""The pool of persistent workers: creation from the capacity plan, dispatch, state moves.

Why: the driver loop should read as PBT logic; everything about Ray handles — where workers are
placed, how a trial's state moves from one worker to another through the object store, the shared
data reference, stopping running segments, per-worker speed — lives here.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import ray

from pbtune.cluster import GpuBundles, cluster_nodes, connect, plan_for
from pbtune.cluster.specs import lanes
from pbtune.engines.fused import members_for
from pbtune.engines.native.worker import RemoteWorker
from pbtune.engines.node_options import driver_options
from pbtune.errors import UserError


class WorkerPool:
    """One Ray actor per planned slot, all sharing one object-store copy of the data per node.

    Args:
        cfg: a resolved experiment config (``workload``, ``options``, ``resources``).
    """

    def __init__(self, cfg: Any) -> None:
        from pbtune.workloads import get
        from pbtune.workloads.registry import canonical_spec, load_data

        res = cfg.resources
        connect(res.address)
        plan = plan_for(cluster_nodes(), res)
        if not plan.workers:
            raise UserError("no worker slot can be placed: " + "; ".join(plan.problems)
                            + " (run `pbtune plan` for the per-node table)")
        self.plan = plan
        # slot → WorkerSpec; grows when nodes join (elastic). With members_per_worker K a worker
        # is K slots ("lanes") that share its process (spec.worker_index), see engines/fused.py.
        self.members = members_for(cfg, len(plan.workers), getattr(get(cfg.workload), "fusible",
                                                                  False))
        self.specs = lanes(plan.workers, self.members)
        self.gpus = GpuBundles()  # GPU workers go to the physical GPU the plan chose
        self.gpus.add(plan.workers, {p.node_id: p.cap_gpus for p in plan.nodes})
        self._res = res
        self.data_ref: Any = None
        self._stop_sent = False
        workload = canonical_spec(cfg.workload)
        # Known to hold states from the start (always, or a workload flagged large_state); with
        # auto and no flag a worker decides by its first state's size (see held.holds_states).
        self.holds_states = res.state_on_worker == "always" or (
            res.state_on_worker == "auto" and bool(getattr(get(cfg.workload), "large_state",
                                                           False)))
        self.workers = []
        self.gangs: dict[int, tuple[Any, list[Any]]] = {}  # slot → (placement group, ranks 1..)
        self._args = (workload, dict(cfg.options), res, bool(cfg.deterministic))
        self._launched = time.monotonic()
        # Workers start (and import torch) while the driver decodes the data.
        for spec in self.specs:
            self.workers.append(self._start(spec) if spec.worker_index == spec.index
                                else self.workers[spec.worker_index])
        # Decoded once, put in the object store once: every worker maps the same arrays.
        try:
            self.data_ref = ray.put(load_data(get(cfg.workload), driver_options(cfg.options)))
        except BaseException:  # no worker outlives a run that cannot start
            self.shutdown()
            raise
        for spec in self.specs:
            if spec.worker_index == spec.index:  # once per worker process, not per lane
                for handle in self.ranks(spec.index):
                    handle.set_data.remote(self.data_ref)
        self.dead: set[int] = set()  # slots whose worker was lost and could not be recreated
        self.starting: dict[int, Any] = {}  # worker not started yet → its pending info() ref
        self.info = self._wait_started(float(res.start_timeout_s))

    def _wait_started(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every started worker's info as soon as the first one has started.

        Why not wait for all: workers start at different speeds (each imports torch; a busy or
        remote node is slower), and the run can use the first one at once; the others are
        adopted the moment they start, like workers of a node that joins. None started within
        ``timeout_s``: UserError (resources another job holds, or Ray has not released yet, keep
        a worker pending with no error at all). A warning names workers still not started after
        ``timeout_s`` (see :meth:`adopt`).
        """
        refs = [w.info.remote(i) for i, w in enumerate(self.workers)]
        first, _ = ray.wait(refs, num_returns=1, timeout=timeout_s)
        if not first:
            self.shutdown()
            raise UserError(
                f"none of the {len(refs)} planned workers started within {timeout_s:g} s: their "
                "CPUs/GPUs are held by something else (`ray status` shows what is in use); free "
                "them, lower resources.slots, or raise resources.start_timeout_s")
        done = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
        info: list[dict[str, Any]] = []
        failed: list[str] = []
        for spec, ref in zip(self.specs, refs, strict=True):
            if ref in done:
                try:
                    info.append(ray.get(ref))
                    continue
                except ray.exceptions.RayError as exc:  # its constructor raised (no CUDA, ...)
                    failed.append(_last_line(exc))
                    self.dead.add(spec.index)
                info.append(_planned(spec))
            else:
                info.append(_planned(spec))
                self.starting[spec.index] = ref
        if failed and len(self.dead) == len(refs):
            self.shutdown()
            raise UserError(f"no worker could start: {failed[0]}")
        if failed:
            print(f"warning: {len(failed)} of {len(refs)} workers could not start "
                  f"({failed[0]}); the run goes on with the others", file=sys.stderr)
        self._late = set(self.starting)  # planned workers the run started without
        self._timeout_s = timeout_s
        return info

    def starting_refs(self) -> list[Any]:
        """The info refs of workers still starting (the driver's wait wakes when one is ready)."""
        return list(self.starting.values())

    @property
    def size(self) -> int:
        return len(self.workers)

    def describe(self) -> list[dict[str, Any]]:
        """Every worker so far: ``index``, ``node_id``, ``ip`` (and host, pid once started),
        ``alive`` (False once retired or lost for good)."""
        return [{**info, "alive": i not in self.dead} for i, info in enumerate(self.info)]

    def membership(self) -> tuple[int, int, int]:
        """(workers so far, dead, still starting): changes whenever :meth:`describe` would."""
        return self.size, len(self.dead), len(self.starting)

    def node_of(self, worker: int) -> str:
        return str(self.info[worker]["ip"])

    def _start(self, spec: Any) -> Any:
        """One worker actor for ``spec`` (rank 0 of a gang when ``spec.ranks`` > 1): its device,
        threads and precision follow its shape."""
        workload, options, res, deterministic = self._args
        device = "cuda" if spec.kind == "gpu" else "cpu"
        args = (workload, options, None, spec.index, device, max(1, int(spec.num_cpus)))
        kwargs = dict(shape=spec.shape, precision=getattr(res.precision, spec.kind),
                      members=spec.members, fuse=res.fuse,
                      gpu_share=spec.num_gpus, live_trials=res.gpu_live_trials,
                      deterministic=deterministic, state_on_worker=res.state_on_worker,
                      large_state_mb=res.large_state_mb, state_buffers=res.state_buffers)
        if spec.ranks > 1:
            handle = self._start_gang(spec, args, kwargs)
        else:
            handle = RemoteWorker.options(**self.gpus.options(spec), max_concurrency=spec.members,
                                          ).remote(*args, **kwargs)
        if self.data_ref is not None:  # a replacement worker: the data is shared already
            for rank in self.ranks(spec.index, handle):
                rank.set_data.remote(self.data_ref)
        if self._stop_sent:  # started while the run stops: it must not start a segment either
            handle.request_stop.remote()
        return handle

    def _start_gang(self, spec: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from pbtune.engines.native.gang import start_gang

        group, ranks = start_gang(spec, args, kwargs)
        self.gangs[spec.index] = (group, ranks[1:])
        return ranks[0]

    def ranks(self, slot: int, leader: Any = None) -> list[Any]:
        """Every actor of a slot: its worker, or a gang's ranks in order."""
        return [leader or self.workers[slot], *self.gangs.get(slot, (None, []))[1]]

    def _end_gang(self, slot: int) -> None:
        from pbtune.engines.native.gang import end_gang

        end_gang(*self.gangs.pop(slot, (None, [])))

    def lanes_of(self, worker: int) -> list[int]:
        """The slots that share ``worker``'s process (itself alone unless fused)."""
        host = self.specs[worker].worker_index
        return [s.index for s in self.specs if s.worker_index == host]

    def replace(self, worker: int, timeout_s: float = 60.0, lost: Any = None) -> bool:
        """Recreate a lost worker on its planned node; False (slot retired) if that fails.

        The slot's node may be gone (node removed, hard node affinity): then the slot is marked
        dead and the remaining workers take its trials. The lost worker's live trials are the
        coordinator's business (it restores them from their snapshots). A fused worker's lanes
        are replaced together: ``lost`` (the handle that failed) already replaced, by another
        lane's loss, is not replaced again.
        """
        siblings = self.lanes_of(worker)
        if lost is not None and self.workers[worker] is not lost:
            return worker not in self.dead
        try:
            ray.kill(self.workers[worker])
        except Exception:  # already dead
            pass
        self._end_gang(worker)  # a gang is lost, and rebuilt, as a whole
        spec = self.specs[siblings[0]]
        if worker in self.dead:  # retired with its node (elastic.retire): nowhere to go
            return False
        handle = self._start(spec)
        try:
            infos = ray.get([handle.info.remote(lane) for lane in siblings], timeout=timeout_s)
        except Exception:  # the node is gone or the actor cannot start there
            ray.kill(handle)
            self._end_gang(worker)
            self.dead.update(siblings)
            return False
        for lane, info in zip(siblings, infos, strict=True):
            self.workers[lane], self.info[lane] = handle, info
        return True

    # -- elasticity (see engines/native/elastic.py) ---------------------------------------------
    def grow(self, nodes: list[Any]) -> list[int]:
        """Start workers on nodes that joined mid-run; returns the new slot indices.

        The new nodes are planned with the run's own resource settings (per-trial resources,
        reserve, ``resource_allocation``), and ``resources.slots`` still caps the live total.
        Non-blocking: a new worker takes work once it has started (it imports torch, seconds),
        see :meth:`adopt`; meanwhile the driver keeps dispatching to the others.
        """
        res = self._res
        live = {s.worker_index for s in self.specs if s.index not in self.dead}  # processes
        room = None if res.slots is None else max(0, res.slots - len(live))
        plan = plan_for(nodes, res, slots=room)
        specs = lanes(plan.workers, self.members, start=self.size)
        if room == 0 or not specs:
            return []
        self.gpus.add(specs, {p.node_id: p.cap_gpus for p in plan.nodes})
        for spec in specs:
            handle = self._start(spec) if spec.worker_index == spec.index \
                else self.workers[spec.worker_index]
            self.specs.append(spec)
            self.workers.append(handle)
            self.info.append(_planned(spec))
            self.starting[spec.index] = handle.info.remote(spec.index)
        return [spec.index for spec in specs]

    def adopt(self) -> list[int]:
        """Workers that have finished starting since the last call (idle: they get trials)."""
        if not self.starting:
            return []
        late = self._late & set(self.starting)
        if late and time.monotonic() - self._launched >= self._timeout_s:
            self._late = set()  # warned once
            print(f"warning: {len(late)} of {len(self.specs)} workers had not started after "
                  f"{self._timeout_s:g} s (resources in use elsewhere); the run goes on with the "
                  "others, they join when they start", file=sys.stderr)
        refs = {ref: w for w, ref in self.starting.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        out = []
        for ref in ready:
            worker = refs[ref]
            del self.starting[worker]
            try:
                self.info[worker] = ray.get(ref)
                out.append(worker)
            except ray.exceptions.RayError:  # its node left before it started
                self.dead.add(worker)
        return out

    def retire(self, node_ids: set[str]) -> list[int]:
        """Mark the workers of nodes that left as dead (their trials move on from snapshots)."""
        gone = [w for w, spec in enumerate(self.specs)
                if spec.node_id in node_ids and w not in self.dead]
        self.dead.update(gone)
        return gone

    def signal_stop(self) -> None:
        """Tell running segments to end after their current iteration (sent once)."""
        if not self._stop_sent:
            for handle in self.workers:  # a dead worker's call just fails: nothing to stop
                handle.request_stop.remote()
            self._stop_sent = True

    def shutdown(self) -> None:
        for handle in self.workers:
            ray.kill(handle)
        for slot in list(self.gangs):
            self._end_gang(slot)
        self.gpus.remove()


def _planned(spec: Any) -> dict[str, Any]:
    """A worker's info before it has started (or when it never will): what the plan knows."""
    return {"index": spec.index, "node_id": spec.node_id, "ip": spec.ip, "shape": spec.shape}


def _last_line(exc: BaseException) -> str:
    """The message that matters in a Ray error: the last line of its text (the cause's own)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
