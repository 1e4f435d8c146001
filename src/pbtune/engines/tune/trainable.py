"""The Ray Tune class trainable that drives any pbtune workload.

Why a *class* trainable (not a function trainable as in ``bench/_tune_baseline.py``): with
``reuse_actors`` Tune can hand a live actor to another trial through :meth:`reset_config` instead of
starting a new process (which would import torch again), and Tune decides when to checkpoint
(``CheckpointConfig(checkpoint_frequency=perturbation_interval)`` plus the pause checkpoints PBT
forces), rather than the trainable writing one at every report.

Identity: Tune copies the *donor's* config into an exploited trial, so anything stored in the
config would follow the donor. A trial's pbtune index (``t003`` → 3, which picks its seed) is
therefore read from Tune's own trial id, whose ``_00003`` suffix is the trial's creation index.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ray import tune

from pbtune.engines.base import is_better
from pbtune.engines.node_options import resolve_here
from pbtune.errors import UserError
from pbtune.workloads.iteration import run_iteration

STATE_FILE = "state.pkl"


def trial_index(tune_trial_id: str) -> int:
    """Creation index of a Tune trial (``"a1b2c_00003"`` → 3)."""
    return int(str(tune_trial_id).rsplit("_", 1)[-1])


class WorkloadTrainable(tune.Trainable):
    """One Tune trial = one workload instance; ``step`` = ``train(1)`` + ``evaluate()``.

    Checkpoints hold the workload state, the Tune trial id that wrote it (an exploit loads
    another trial's checkpoint and then keeps its own data-order RNG, as pbtune does) and the
    trial's best ``(iteration, metric, state)`` so far, from which the engine writes
    ``best_model.pt`` without an extra checkpoint per improvement.
    """

    def setup(self, config: dict[str, Any], *, workload: str = "", options: Mapping[str, Any]
              | None = None, seeds: Sequence[int] = (), data: Any = None, metric: str = "",
              mode: str = "max", device: str = "cpu", threads: int = 1, precision: str = "fp32",
              deterministic: bool = False) -> None:
        for name in ("ray.tune", "ray.train"):  # no INFO line per checkpoint save and restore
            logging.getLogger(name).setLevel(logging.WARNING)
        # Per-node options (``slowdown: {"slow": 3.0}``) resolved for this actor's node, as the
        # native workers do, so both engines see the same heterogeneous cluster.
        self._spec = (workload, resolve_here(dict(options or {})), list(seeds), device, threads)
        self._numerics = (precision, deterministic)  # as the native workers apply them
        self._data = data
        self._metric, self._mode = metric, mode
        self._build()

    def _build(self) -> None:
        from pbtune.workloads import get
        from pbtune.workloads.precision import resolve, workload_kwargs

        workload, options, seeds, device, threads = self._spec
        cls = get(workload)
        precision = resolve(getattr(cls, "precisions", ("fp32",)), self._numerics[0],
                            "gpu" if device == "cuda" else "cpu")
        self._names = tuple(cls.hyperparameters)
        self._index = trial_index(self.trial_id) if self.trial_id != "default" else 0
        seed = seeds[self._index % len(seeds)] if seeds else self._index
        self.workload = cls(self._hyper(self.config), data=self._data, options=options,
                            seed=seed, device=device, **workload_kwargs(precision))
        if "torch" in sys.modules:  # one slot = ``threads`` cores, as on the native workers
            from pbtune.workloads._torch_utils import set_determinism

            sys.modules["torch"].set_num_threads(max(1, threads))
            set_determinism(self._numerics[1])
        self._best: tuple[int, float, dict[str, Any]] | None = None
        self._pid = os.getpid()

    def _hyper(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {k: config[k] for k in self._names if k in config}

    def step(self) -> dict[str, Any]:
        """One iteration, reported to Tune as the metrics only.

        Tune adds ``training_iteration``, ``timestamp`` and ``time_this_iter_s`` itself (and would
        take ours in place of its own timing), so the shared row's bookkeeping columns stay out.
        A non-finite metric is reported, not raised, as before: Tune's schedulers rank it. A
        missing or non-numeric metric fails the trial with the shared, readable message.
        """
        step = run_iteration(self.workload, self._metric)
        if step.metric_error is not None:
            raise UserError(step.metric_error)
        best = None if self._best is None else self._best[1]
        if is_better(step.value, best, self._mode):
            self._best = (self.workload.iteration, step.value, self.workload.get_state())
        row = dict(step.metrics)
        # The config that produced this row: by the time Tune's callbacks see the result, PBT or
        # replay may already have changed ``trial.config`` for the next iteration.
        # compute_s: seconds in train + evaluate (as native).
        row.update(compute_s=step.elapsed_s, worker_pid=self._pid,
                   pbtune_config=self._hyper(self.config))
        return row

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        payload = {"state": self.workload.get_state(), "trial": self.trial_id, "best": self._best}
        with open(os.path.join(checkpoint_dir, STATE_FILE), "wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load_checkpoint(self, checkpoint: str | dict | None) -> None:
        with open(os.path.join(str(checkpoint), STATE_FILE), "rb") as f:
            payload = pickle.load(f)
        own = payload["trial"] == self.trial_id
        self.workload.set_state(payload["state"], include_rng=own)
        if own:
            self._best = payload["best"]  # this actor may have served other trials meanwhile
        # set_state applied the checkpoint's config; this trial runs its own (explored) one.
        self.workload.apply_hyperparameters(self._hyper(self.config))

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Reuse this actor: same trial → new hyperparameters in place; another trial → rebuild.

        Tune restores a checkpoint right after when the trial has one, so a rebuilt workload
        only starts from scratch for a trial that never ran.
        """
        self.config = new_config
        if trial_index(self.trial_id) != self._index:
            self._build()
        else:
            self.workload.apply_hyperparameters(self._hyper(new_config))
        return True


def read_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint payload written by :meth:`WorkloadTrainable.save_checkpoint`."""
    with open(os.path.join(path, STATE_FILE), "rb") as f:
        return pickle.load(f)
