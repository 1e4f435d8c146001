"""What a worker reports of its node with every row: CPU and GPU utilisation, its memory.

Why apart from the worker: it is read once per iteration by every worker kind (single workers
and every rank of a gang), and NVML is optional; keeping the probing here keeps the actor code
about running segments.
"""

from __future__ import annotations

from typing import Any


def resource_usage(process: Any) -> dict[str, float]:
    """Node CPU %, this worker's resident memory (MiB) and, with NVML, GPU utilisation %."""
    import psutil

    usage = {"node_cpu_percent": psutil.cpu_percent(interval=None),
             "worker_rss_mb": process.memory_info().rss / 2**20}
    try:  # optional: NVIDIA's management library, present on GPU nodes with nvidia-ml-py
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        if handles:
            usage["node_gpu_percent"] = sum(
                pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in handles) / len(handles)
    except Exception:  # no NVML, no GPU: report CPU only
        pass
    return usage
