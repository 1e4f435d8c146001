"""Training precision per device: which one a worker uses, and what a workload is given.

Why: on a mixed cluster the same trial trains on a GPU worker in bf16 or fp16 and on a CPU worker
in fp32 (fp16 autocast on CPU is slow and GradScaler is CUDA-only). The choice must be explicit,
per device kind, and visible in every row (trials.csv's ``precision`` column), or a score that
moved with a trial from a GPU worker to a CPU worker could not be read. A workload says which
precisions it implements (:attr:`~pbtune.workloads.base.Workload.precisions`); it is handed the
resolved one as ``precision=`` and applies it itself (autocast, GradScaler).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PRECISIONS = ("fp32", "bf16", "fp16")  # what a workload may declare
AUTO = "auto"  # GPU: bf16 where the workload and the card support it, else fp16, else fp32


def resolve(supported: Sequence[str], requested: str, kind: str,
            bf16_ok: bool | None = None) -> str:
    """The precision a worker of ``kind`` (``"gpu"``/``"cpu"``) trains in.

    Args:
        supported: the workload's declared precisions.
        requested: ``resources.precision.<kind>`` (already validated against ``supported``
            unless it is ``auto``).
        kind: the worker's kind.
        bf16_ok: whether the GPU computes in bf16 (None: ask torch, when it is imported).
    """
    if requested != AUTO:
        return requested
    if kind != "gpu":
        return "fp32"
    if "bf16" in supported and (bf16_ok if bf16_ok is not None else _cuda_bf16()):
        return "bf16"
    return "fp16" if "fp16" in supported else "fp32"


def _cuda_bf16() -> bool:
    """Whether the GPU computes in bf16; asked of torch only when the workload imported it.

    A torch-free workload (the toy) uses the precision as a label only, and importing torch
    here would delay its worker's start by seconds.
    """
    import sys

    if "torch" not in sys.modules:
        return True
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:  # no CUDA: a label only
        return True


def workload_kwargs(precision: str) -> dict[str, Any]:
    """Constructor arguments for it: none for fp32, so workloads that know only fp32 (and do
    not take a ``precision`` argument) keep working."""
    return {} if precision == "fp32" else {"precision": precision}


def check(supported: Sequence[str], requested: dict[str, str], kinds: Sequence[str],
          workload: str) -> str | None:
    """A one-line problem if a worker kind in ``kinds`` asks for a precision the workload
    lacks (None when every one is fine)."""
    for kind in kinds:
        want = requested[kind]
        if want != AUTO and want not in supported:
            return (f"resources.precision.{kind} = {want}, but workload {workload} trains in "
                    f"{', '.join(supported)}; set it to one of those or auto")
    return None


def autocast_dtype(precision: str) -> Any:
    """The torch dtype for ``torch.autocast`` (None: fp32, no autocast)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
