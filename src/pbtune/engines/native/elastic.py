"""Elasticity: workers for nodes that join mid-run, retirement for nodes that leave.

Why: on shared and SLURM clusters nodes come and go during a long PBT run (a worker job starts
late, a node is pre-empted). A node that joins should add capacity at once, without a restart; a
node that leaves must cost no trial. The engine's driver loop calls :meth:`NodeWatcher.poll` once
per turn; at most every ``interval_s`` it asks the GCS which nodes joined or left
(:func:`pbtune.cluster.watch_nodes`, one ``ray.nodes()`` call):

* joined: the node is planned with the run's resource settings and gets workers
  (:meth:`WorkerPool.grow`); they are idle, so the next dispatch gives them trials;
* left: its workers are marked dead (:meth:`WorkerPool.retire`) so nothing new is sent there.
  Segments that were running there fail with a Ray error and go through the engine's worker-loss
  recovery (:mod:`~pbtune.engines.core.failures`): the trial continues on another worker from its
  latest snapshot, or from its latest checkpoint when the snapshot was stored on the lost node.
  Trials merely *held* there move on from their snapshot the next time they are dispatched.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 3.0  # s between membership polls; a poll is one GCS call


class NodeWatcher:
    """Polls cluster membership and grows or retires the pool's workers.

    Args:
        pool: the engine's :class:`~pbtune.engines.native.pool.WorkerPool`.
        interval_s: seconds between polls (the engine also uses it as its wait timeout, so a
            join is noticed even while every worker is in a long segment).
    """

    def __init__(self, pool: Any, interval_s: float = WATCH_INTERVAL_S) -> None:
        self.pool = pool
        self.interval_s = interval_s
        self.known = {n.node_id for n in pool.plan.nodes}
        self._next = time.monotonic() + interval_s
        self.events: list[dict[str, Any]] = []  # for the journal/tests: what changed, when

    def poll(self, force: bool = False) -> bool:
        """Look for joins and departures if the interval has passed; True when the pool changed."""
        adopted = self.pool.adopt()  # grown workers that finished starting
        if adopted:
            self.events.append({"event": "workers_ready", "workers": adopted})
        if not force and time.monotonic() < self._next:
            return bool(adopted)
        from pbtune.cluster import watch_nodes

        self._next = time.monotonic() + self.interval_s
        joined, left = watch_nodes(self.known)
        changed = bool(adopted)
        if left:
            self.known -= set(left)
            gone = self.pool.retire(set(left))
            self.events.append({"event": "nodes_left", "nodes": left, "workers": gone})
            changed = changed or bool(gone)
        if joined:
            try:
                new = self.pool.grow(joined)
            except Exception as exc:  # a node that joins and dies at once: try again next poll
                log.warning("could not start workers on new nodes: %s", exc)
                return changed
            self.known |= {n.node_id for n in joined}
            self.events.append({"event": "nodes_joined", "nodes": [n.node_id for n in joined],
                                "workers": new})
            changed = changed or bool(new)
        return changed
