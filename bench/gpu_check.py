"""One command that checks pbtune's GPU paths on a GPU machine and records what it saw.

Why: the project is developed on machines without a GPU; every CUDA path (host-device syncs,
mixed precision, channels-last, determinism, device-independent states, memory, fractional-GPU
placement) is tested on CPU where it can be, and measured here where it cannot. It runs from a
plain checkout with torch and Ray installed system-wide (no ``.venv`` needed: ``src/`` is put on
the path, also for Ray's workers) on synthetic CIFAR-sized data written in the real format, in
under 10 minutes on one GPU, and writes one JSON file plus a short table.

    python bench/gpu_check.py [--out gpu_check.json]
    python bench/gpu_check.py --dry-run      # CPU, tiny sizes: the script's own test (CI)

Sections (each recorded, or its error recorded, independently): environment and cuDNN flags;
host-device syncs per training step (``torch.cuda.set_sync_debug_mode``); images/s for
ResNet-18 CIFAR-10 at batch 128/512, fp32 vs bf16, channels-last on/off; one full epoch; bitwise
repeatability with ``deterministic`` on and off; a GPU trial's state loaded on the CPU; ResNet-50
peak memory at batch 512/1024 and the exploit (state copy) latency GPU to GPU; a 4-trial
population as 4 x 0.25 GPU vs one full-GPU slot, with the GPU each fractional worker saw.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)  # Ray's workers

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pbtune.workloads import get  # noqa: E402
from pbtune.workloads._torch_utils import set_determinism  # noqa: E402

SIZES = {  # name → (images per split, steps timed, batches, ResNet-50 batches, width)
    "full": {"train": 45_000, "test": 10_000, "steps": 40, "batches": (128, 512),
             "r50": (512, 1024), "width": 64, "pop_steps": 60},
    "dry": {"train": 64, "test": 16, "steps": 2, "batches": (8,), "r50": (8,), "width": 8,
            "pop_steps": 2},
}


def data(n_train: int, n_test: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("val", max(8, n_test // 2)), ("test", n_test)):
        out[f"{split}_x"] = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        out[f"{split}_y"] = rng.integers(0, 10, n).astype(np.int64)
    return out


def build(name: str, arrays: dict, device: str, batch: int, *, precision: str = "fp32",
          channels_last: bool = False, steps: int | None = None, width: int = 64,
          seed: int = 0) -> Any:
    cls = get(name)
    options = {"steps_per_iteration": steps, "channels_last": channels_last, "width": width,
               "val_size": 8}
    kwargs = {} if precision == "fp32" else {"precision": precision}
    return cls({"batch_size": batch}, data=arrays, options=options, seed=seed, device=device,
               **kwargs)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def environment(device: str) -> dict[str, Any]:
    env = {"torch": torch.__version__, "device": device,
           "cudnn_benchmark": torch.backends.cudnn.benchmark,
           "cudnn_deterministic": torch.backends.cudnn.deterministic}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported(),
                   visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
    return env


def syncs_per_step(arrays: dict, device: str, size: dict) -> float | None:
    """Host-device synchronisations torch reports per training step (the target is 0)."""
    if device != "cuda":
        return None
    w = build("resnet18-cifar10", arrays, device, 128, steps=size["steps"], width=size["width"])
    w.train(1)  # warm-up: first-use allocations and cuDNN autotuning are not per-step costs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            w.train(1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(c.message) for c in caught) / size["steps"]


def throughput(arrays: dict, device: str, size: dict) -> list[dict[str, Any]]:
    rows = []
    for batch in size["batches"]:
        for precision in ("fp32", "bf16"):
            for channels_last in (False, True):
                w = build("resnet18-cifar10", arrays, device, batch, precision=precision,
                          channels_last=channels_last, steps=size["steps"], width=size["width"])
                w.train(1)  # warm-up
                sync(device)
                start = time.perf_counter()
                w.train(1)
                sync(device)
                seconds = time.perf_counter() - start
                rows.append({"batch": batch, "precision": precision,
                             "channels_last": channels_last,
                             "images_per_s": round(batch * size["steps"] / seconds, 1)})
    return rows


def epoch_s(arrays: dict, device: str, size: dict) -> float:
    precision = "bf16" if device == "cuda" else "fp32"
    w = build("resnet18-cifar10", arrays, device, 512 if device == "cuda" else 16,
              precision=precision, channels_last=device == "cuda", width=size["width"])
    w.train(1)  # warm-up epoch
    sync(device)
    start = time.perf_counter()
    w.train(1)
    sync(device)
    return round(time.perf_counter() - start, 3)


def repeatability(arrays: dict, device: str, size: dict) -> dict[str, bool]:
    """Two runs from one seed: bitwise equal weights with ``deterministic`` on (and off?)."""
    out = {}
    for flag in (True, False):
        set_determinism(flag)
        states = []
        for _ in range(2):
            w = build("resnet18-cifar10", arrays, device, 32, steps=size["steps"],
                      width=size["width"])
            w.train(1)
            states.append(w.get_state()["model"])
        out[f"deterministic_{str(flag).lower()}"] = all(
            torch.equal(states[0][k], states[1][k]) for k in states[0])
    set_determinism(False)
    return out


def state_on_cpu(arrays: dict, device: str, size: dict) -> dict[str, Any]:
    """A GPU trial's state (as exploit, checkpoints and best_model.pt hold it) loads on CPU."""
    w = build("resnet18-cifar10", arrays, device, 16, steps=size["steps"], width=size["width"])
    w.train(1)
    state = w.get_state()
    devices = sorted({t.device.type for t in _tensors(state)})
    cpu = build("resnet18-cifar10", arrays, "cpu", 16, steps=1, width=size["width"], seed=1)
    cpu.set_state(state)
    cpu.train(1)
    return {"state_devices": devices, "loaded_and_trained_on_cpu": True}


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in _tensors(v)]
    return []


def resnet50_memory(arrays: dict, device: str, size: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    donor = None
    for batch in size["r50"]:
        w = build("resnet50-cifar100", _cifar100(arrays), device, batch, steps=2,
                  precision="bf16" if device == "cuda" else "fp32", width=size["width"])
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        w.train(1)
        sync(device)
        if device == "cuda":
            out[f"peak_gib_batch_{batch}"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        donor = donor or w
    target = build("resnet50-cifar100", _cifar100(arrays), device, size["r50"][0], steps=1,
                   width=size["width"], seed=5)
    start = time.perf_counter()
    target.set_state(donor.get_state(), include_rng=False)  # the exploit path: out, then in
    sync(device)
    out["exploit_s"] = round(time.perf_counter() - start, 4)
    return out


def _cifar100(arrays: dict) -> dict:
    return {k: (v % 100 if k.endswith("_y") else v) for k, v in arrays.items()}


def population(device: str, size: dict, root: Path) -> dict[str, Any]:
    """4 trials as 4 x 0.25 GPU (or 2 CPU slots) vs one slot, through the real engine."""
    from pbtune.config import load_config, resolve
    from pbtune.engines import create_engine
    from pbtune.workloads.synthetic import write_cifar10

    n = 2048 if device == "cuda" else 64
    write_cifar10(root, n_train=n, n_test=256 if device == "cuda" else 16)
    # The dry run (CPU) runs the fractional case only, as 2 CPU slots: the same code path.
    shapes = {"fractional": 0.25, "whole": 1.0} if device == "cuda" else {"fractional": 0.0}
    out = {}
    for label, gpus in shapes.items():
        sets = {"workload": "resnet18-cifar10", "population": 4, "seed": 0,
                "stop.max_iterations": 2, "stop.metric_threshold": None,
                "pbt.perturbation_interval": 1, "resources.gpus_per_trial": gpus,
                "resources.cpu_workers": "none", "name": f"gpu-check-{label}",
                "resources.slots": (4 if label == "fractional" else 1) if gpus else (
                    2 if label == "fractional" else 1),
                "options": {"data_dir": str(root), "download": False, "verify_checksums": False,
                            "val_size": 64 if device == "cuda" else 8,
                            "steps_per_iteration": size["pop_steps"], "width": size["width"]}}
        cfg = resolve(load_config(None, [f"{k}={json.dumps(v)}" for k, v in sets.items()],
                                  env={}))
        engine = create_engine(cfg, [])
        engine.prepare()
        deadline = time.monotonic() + 120
        while engine.pool.starting and time.monotonic() < deadline:  # every worker up
            engine.pool.adopt()
            time.sleep(0.05)
        seen = [w.get("gpu_ids") for w in engine.pool.describe()]
        summary = engine.run()
        out[label] = {"slots": len(seen), "gpu_ids_seen": seen,
                      "wall_s": round(summary["wall_s"], 2),
                      "efficiency": round(summary.get("efficiency") or 0.0, 3),
                      "images_per_s": round(4 * 2 * size["pop_steps"] * 512 / summary["wall_s"], 1)}
    return out


def table(report: dict[str, Any]) -> str:
    """The short table: throughput per setting, then the single numbers."""
    lines = ["", f"{'batch':>6} {'precision':>9} {'channels_last':>13} {'images/s':>10}"]
    for row in report.get("throughput") or []:
        if isinstance(row, dict) and "batch" in row:
            lines.append(f"{row['batch']:>6} {row['precision']:>9} "
                         f"{row['channels_last']!s:>13} {row['images_per_s']:>10}")
    for key in ("syncs_per_step", "epoch_s", "repeatable", "resnet50"):
        lines.append(f"{key}: {json.dumps(report.get(key), default=str)[:100]}")
    for label, row in (report.get("population") or {}).items():
        if isinstance(row, dict) and "wall_s" in row:
            lines.append(f"population {label}: {row['slots']} slots, wall {row['wall_s']} s, "
                         f"efficiency {row['efficiency']}, GPUs seen {row['gpu_ids_seen']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (the script's test)")
    args = p.parse_args(argv)
    device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    if not args.dry_run and device == "cpu":
        print("gpu_check: no CUDA device here; use --dry-run on CPU", file=sys.stderr)
        return 2
    size = SIZES["dry" if args.dry_run else "full"]
    arrays = data(size["train"], size["test"])
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="pbtune-gpu-check-") as tmp:
        sections = [
            ("environment", lambda: environment(device)),
            ("syncs_per_step", lambda: syncs_per_step(arrays, device, size)),
            ("throughput", lambda: throughput(arrays, device, size)),
            ("epoch_s", lambda: epoch_s(arrays, device, size)),
            ("repeatable", lambda: repeatability(arrays, device, size)),
            ("state_on_cpu", lambda: state_on_cpu(arrays, device, size)),
            ("resnet50", lambda: resnet50_memory(arrays, device, size)),
            ("population", lambda: population(device, size, Path(tmp))),
        ]
        for name, run in sections:
            start = time.perf_counter()
            try:
                report[name] = run()
            except Exception as exc:  # record and go on: one broken path hides no other
                report[name] = {"error": f"{type(exc).__name__}: {exc}",
                                "traceback": traceback.format_exc()[-2000:]}
            print(f"{name:<16} {time.perf_counter() - start:7.1f} s  "
                  f"{json.dumps(report[name], default=str)[:110]}")
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    failed = [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    print(f"wrote {args.out}" + (f"; FAILED sections: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
