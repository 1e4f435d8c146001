"""The pool of persistent workers: creation from the capacity plan, dispatch, state moves.

Why: the driver loop should read as PBT logic; everything about Ray handles — where workers are
placed, how a trial's state moves from one worker to another through the object store, the shared
data reference, the stop signal, per-worker speed — lives here.
"""

from __future__ import annotations

from typing import Any

import ray

from pbtune.cluster import actor_options, cluster_nodes, connect, plan_cluster
from pbtune.engines.base import Trial
from pbtune.engines.native.worker import RemoteWorker, StopSignal
from pbtune.errors import UserError


class WorkerPool:
    """One Ray actor per planned slot, all sharing one object-store copy of the data per node.

    Args:
        cfg: a resolved experiment config (``workload``, ``options``, ``resources``).
    """

    def __init__(self, cfg: Any) -> None:
        from pbtune.workloads import get
        from pbtune.workloads.registry import canonical_spec

        res = cfg.resources
        connect(res.address)
        plan = plan_cluster(
            cluster_nodes(),
            cpus_per_trial=res.cpus_per_trial,
            gpus_per_trial=res.gpus_per_trial,
            reserve_cpus=res.reserve_cpus,
            resource_allocation=dict(res.resource_allocation) or None,
            slots=res.slots,
        )
        if not plan.workers:
            raise UserError("no worker slot can be placed: " + "; ".join(plan.problems)
                            + " (run `pbtune plan` for the per-node table)")
        self.plan = plan
        # Decoded once, put in the object store once: every worker maps the same arrays.
        self.data_ref = ray.put(get(cfg.workload).load_data(dict(cfg.options)))
        self.signal = StopSignal.options(num_cpus=0).remote()
        threads = max(1, int(res.cpus_per_trial))
        workload = canonical_spec(cfg.workload)
        self.workers = []
        for spec in plan.workers:
            device = "cuda" if spec.num_gpus > 0 else "cpu"
            handle = RemoteWorker.options(**actor_options(spec)).remote(
                workload, dict(cfg.options), self.data_ref, spec.index, device, threads,
                self.signal,
            )
            self.workers.append(handle)
        self.info = ray.get([w.info.remote() for w in self.workers])
        self.speeds: dict[int, float] = {}  # worker → iterations per compute second (EMA)
        self._stop_sent = False

    @property
    def size(self) -> int:
        return len(self.workers)

    def describe(self) -> list[dict[str, Any]]:
        return list(self.info)

    def node_of(self, worker: int) -> str:
        return str(self.info[worker]["ip"])

    def idle(self, busy: set[int]) -> list[int]:
        """Idle workers, fastest first (unmeasured ones count as fast so they get measured)."""
        free = [w for w in range(self.size) if w not in busy]
        return sorted(free, key=lambda w: (-self.speeds.get(w, float("inf")), w))

    def record_speed(self, worker: int, iterations: int, compute_s: float) -> None:
        if iterations and compute_s > 0:
            rate = iterations / compute_s
            old = self.speeds.get(worker)
            self.speeds[worker] = rate if old is None else 0.7 * old + 0.3 * rate

    def export(self, worker: int | None, trial_id: str, drop: bool = False) -> Any:
        """An ObjectRef to the trial's current state on ``worker`` (exact, never a stale file)."""
        if worker is None:
            raise RuntimeError(f"trial {trial_id} has no live state on any worker")
        return self.workers[worker].export_state.remote(trial_id, drop)

    def submit(self, worker: int, trial: Trial, target: int, **kwargs: Any) -> tuple[Any, Any]:
        """Start the trial's next segment on ``worker``; moves its state there if needed."""
        state, include_rng = trial.pending_state, trial.include_rng
        if trial.worker is not None and trial.worker != worker:
            if state is None:  # plain move: take the live state from its holder
                state, include_rng = self.export(trial.worker, trial.trial_id, drop=True), True
            else:  # exploit: the old holder's copy is obsolete
                self.workers[trial.worker].drop.remote(trial.trial_id)
        trial.pending_state, trial.include_rng = None, True
        return self.workers[worker].run.remote(
            trial.trial_id, dict(trial.config), trial.seed, target, state=state,
            include_rng=include_rng, **kwargs,
        )

    def signal_stop(self) -> None:
        """Tell running segments to end after their current iteration (sent once)."""
        if not self._stop_sent:
            self.signal.set.remote()
            self._stop_sent = True

    def shutdown(self) -> None:
        for handle in [*self.workers, self.signal]:
            ray.kill(handle)
