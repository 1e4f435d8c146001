"""The ``resources`` section: where trials run, how much of each node they take, how states move.

Why apart from the rest of the schema: it is the largest section and the one the cluster layer
(the capacity plan, the worker pool) reads; its keys are documented in docs/configuration.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pbtune.config.types import Float, Int, StrictModel


class PrecisionConfig(StrictModel):
    """Training precision per worker kind (recorded per row in trials.csv's ``precision``)."""

    cpu: Literal["fp32", "bf16"] = "fp32"  # CPU workers (fp16 autocast is slow on CPU)
    gpu: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16, else fp16, else fp32


class ResourceConfig(StrictModel):
    """Where trials run and how much of each node they may take."""

    address: str | None = None  # Ray address; None → $RAY_ADDRESS, else a local Ray instance
    slots: Int | None = Field(None, gt=0)  # concurrent workers; None = as many as fit
    cpus_per_trial: Float = Field(1.0, gt=0)  # CPUs per worker (a GPU worker's feeders too)
    gpus_per_trial: Float = Field(0.0, ge=0)  # GPUs per GPU worker; fractions share a GPU
    # W: worker processes per trial, a data-parallel gang (one torch.distributed group: gloo on
    # CPU, NCCL on GPU) of W workers of cpus_per_worker CPUs and gpus_per_worker GPUs each.
    workers_per_trial: Int = Field(1, ge=1)
    cpus_per_worker: Float | None = Field(None, gt=0)  # Cw: the name for cpus_per_trial
    gpus_per_worker: Float | None = Field(None, ge=0)  # Gw: the name for gpus_per_trial
    gang_placement: Literal["pack", "spread"] = "pack"  # pack: a gang on one node
    # K: trials a worker trains at once as one batched model (fused populations): a worker is
    # K lanes to the coordinator. fuse: auto times fused against one-after-the-other on the
    # first rounds and keeps the faster; always/never decide without timing.
    members_per_worker: Int = Field(1, ge=1)
    fuse: Literal["auto", "always", "never"] = "auto"
    # With gpus_per_trial > 0, which nodes also get CPU workers (one population on both):
    # auto = nodes without GPUs; all = also a GPU node's CPUs left over; none = GPU workers only.
    cpu_workers: Literal["auto", "all", "none"] = "auto"
    cpus_per_cpu_trial: Float | None = Field(None, gt=0)  # CPUs per CPU worker (None: as above)
    precision: PrecisionConfig = PrecisionConfig()
    # Trials a GPU worker keeps on its device between segments; the others wait on the host
    # (restored exactly when they run there again). null: no limit.
    gpu_live_trials: Int | None = Field(4, ge=1)
    reserve_cpus: Float = Field(1.0, ge=0)  # CPUs per node left to Ray itself (Csys)
    # RESOURCE_ALLOCATION: node IP → {"CPU": n, "GPU": m} caps on what pbtune may use there.
    resource_allocation: dict[str, dict[str, Float]] = {}
    # Seconds to wait for the first planned worker to start (an error if none did). The run
    # starts with it and the others join as they start; the plan counts a node's total resources,
    # so another job holding some keeps a worker pending: a warning names those still not started
    # after this time.
    start_timeout_s: Float = Field(120.0, gt=0)
    # Where trial states live between segments. never: a snapshot of each state goes to Ray's
    # object store after every segment (fast for small states: a move or an exploit is a
    # reference). always: states stay on their workers; a donor's is copied once to its
    # target, checkpoints are written by the workers (the run directory must be shared by all
    # nodes). auto: the workload's large_state flag, else the first state's size against
    # large_state_mb.
    state_on_worker: Literal["auto", "always", "never"] = "auto"
    large_state_mb: Float = Field(512.0, gt=0)  # MB: auto keeps larger states on their workers
    # Copies of held states each worker keeps for reuse (states of host memory beyond its live
    # trials): a copy into memory already touched is many times faster than into new memory.
    # 0: every copy takes new memory.
    state_buffers: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _per_worker_names(self) -> ResourceConfig:
        """``cpus_per_worker``/``gpus_per_worker`` (Cw/Gw, per worker process, as the original
        guide names them) are ``cpus_per_trial``/``gpus_per_trial``, whose names predate gangs;
        either may be set, and both are the same value once resolved."""
        for old, new in (("cpus_per_trial", "cpus_per_worker"),
                         ("gpus_per_trial", "gpus_per_worker")):
            given = getattr(self, new)
            if given is None:
                object.__setattr__(self, new, getattr(self, old))
            elif old in self.model_fields_set and getattr(self, old) != given:
                raise ValueError(f"{old}={getattr(self, old):g} and {new}={given:g} name the "
                                 f"same amount (per worker process); set only {new}")
            else:
                object.__setattr__(self, old, given)
        return self

    @model_validator(mode="after")
    def _members(self) -> ResourceConfig:
        """Fused members share one worker process: not a gang's, and their states are small."""
        k = self.members_per_worker
        if k > 1 and self.workers_per_trial > 1:
            raise ValueError(f"members_per_worker = {k} and workers_per_trial = "
                             f"{self.workers_per_trial}: a fused worker trains its members in "
                             "one process, a gang one trial in several; set one of them to 1")
        if k > 1 and self.state_on_worker == "always":
            raise ValueError(f"members_per_worker = {k} needs state_on_worker: auto or never "
                             "(fused members are small models whose states go to the object "
                             "store); set one of them back")
        return self

    @field_validator("resource_allocation", mode="before")
    @classmethod
    def _original_layout(cls, value: Any) -> Any:
        """The original tool's ``{"CPU": {ip: n}, "GPU": {ip: n}}`` becomes ``{ip: {CPU, GPU}}``.

        Why: users' launch scripts already hold ``RESOURCE_ALLOCATION`` in that layout; it is
        accepted verbatim (a node missing from one of the two gets no cap on that resource).
        """
        if isinstance(value, dict) and value and set(value) <= {"CPU", "GPU"} and all(
                isinstance(v, dict) for v in value.values()):
            nodes: dict[str, dict[str, Any]] = {}
            for kind, per_node in value.items():
                for node, amount in per_node.items():
                    nodes.setdefault(str(node), {})[kind] = amount
            return nodes
        return value

    @field_validator("resource_allocation")
    @classmethod
    def _allocation(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for node, caps in value.items():
            for key, amount in caps.items():
                if key not in ("CPU", "GPU"):
                    raise ValueError(f"node {node}: key {key!r} is not a resource; use CPU or GPU")
                if amount < 0:
                    raise ValueError(f"node {node}: {key} = {amount} must be >= 0")
        return value
