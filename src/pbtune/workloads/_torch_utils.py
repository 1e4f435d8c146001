"""Small helpers shared by the torch workloads (digits, vision, ...).

Why: every torch workload must do the same few delicate things the same way, or PBT silently
breaks: seed model initialisation without disturbing the process-global RNG (workers build many
trials in one process, in an order that depends on scheduling), own a private data-order stream
whose state travels with the checkpoint, change optimiser hyperparameters *in place* (rebuilding
an optimiser would drop its momentum buffers on every explore), and hand out states made of CPU
tensors that are copies (a state goes through Ray's object store or to disk, and must not alias
the live model that keeps training). The names here are a stable API for all workloads.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from pbtune.store.copies import copy_state

__all__ = [
    "configure_threads",
    "generator_state",
    "is_finite",
    "limit_gpu_memory",
    "load_optimizer_state",
    "optimizer_state_to_device",
    "restore_generator",
    "seeded_generator",
    "seeded_init",
    "set_determinism",
    "set_param_groups",
    "state_to_cpu",
    "write_group_value",
]


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A private ``torch.Generator`` seeded with ``seed``.

    Why: data shuffling (and any other per-trial randomness) must come from a stream the workload
    owns, so its state can be captured in ``get_state`` and is unaffected by other trials sharing
    the process. Use a CPU generator for ``torch.randperm`` of CPU index tensors.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


@contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Run a block (typically model construction) with the global CPU RNG seeded by ``seed``.

    Why: ``nn.Module`` constructors draw their initial weights from the global RNG. Forking it
    makes the weights a function of ``seed`` alone and restores the global state afterwards, so
    building trial B never depends on whether trial A was built first.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def generator_state(generator: torch.Generator) -> torch.Tensor:
    """A CPU copy of ``generator``'s state (a uint8 tensor), safe to pickle and to keep."""
    return generator.get_state().detach().to("cpu", copy=True)


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> None:
    """Restore a state from :func:`generator_state` into ``generator`` (copied, not aliased)."""
    generator.set_state(state.detach().to("cpu", dtype=torch.uint8, copy=True))


def set_param_groups(optimizer: torch.optim.Optimizer, **values: float) -> None:
    """Set hyperparameters (``lr=..., momentum=..., weight_decay=...``) on every param group.

    Why: in place, so the optimiser object and its state (momentum buffers, Adam moments) survive
    PBT's explore step. A key the optimiser's groups do not have raises ``KeyError`` naming the
    keys they do have (e.g. ``momentum`` on Adam), instead of being silently added and ignored.
    Tensor-valued entries (``capturable``/``fused`` optimisers) are updated with ``fill_``.
    """
    for group in optimizer.param_groups:
        for key, value in values.items():
            if key not in group:
                valid = sorted(k for k in group if k != "params")
                raise KeyError(
                    f"{type(optimizer).__name__} param groups have no {key!r}; valid: {valid}"
                )
            write_group_value(group, key, value)


def write_group_value(group: dict[str, Any], key: str, value: Any) -> None:
    """``group[key] = value``, in place: tensor-valued entries (``capturable``/``fused``
    optimisers) are filled, so the optimiser keeps the tensor it holds."""
    if isinstance(group[key], torch.Tensor):
        group[key].fill_(value)
    else:
        group[key] = value


def state_to_cpu(obj: Any) -> Any:
    """Deep copy of ``obj`` with every tensor detached, copied and moved to CPU.

    Recurses into dicts (``OrderedDict`` kept), lists and tuples; other leaves are deep-copied.
    Why: a state must never alias the live model (it would change under the next ``train``) and
    must be CPU-only to travel through the object store or be loaded on a CPU-only node.
    """
    return copy_state(obj)


def set_determinism(deterministic: bool) -> None:
    """Deterministic cuDNN/cuBLAS and torch algorithms for this process, or the fastest ones.

    Why explicit (``deterministic`` in the config, default false): on CUDA, cuDNN picks
    convolution algorithms by benchmark and some kernels use atomics, so the same seed gives
    slightly different scores run to run; PBT turns such differences into different exploit
    decisions. On: ``cudnn.deterministic``, no benchmark, ``use_deterministic_algorithms``
    (warn-only for ops that have no deterministic kernel) and the cuBLAS workspace setting, so a
    run repeats bit for bit on the same GPU model and software. Off: cuDNN benchmarks (faster for
    fixed shapes). CPU training is deterministic either way for the built-in workloads.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def limit_gpu_memory(share: float) -> None:
    """Cap this process's CUDA caching allocator at ``share`` of the GPU (0 or ≥ 1: no cap).

    Why: four 0.25-GPU workers share one card; without a cap one worker's peak (a batch size
    explored to 1024) can take memory its neighbours already count on, and *they* fail. With
    it, the worker over its share gets the out-of-memory error in its own trial.
    """
    if 0 < share < 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(share)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """``optimizer.load_state_dict`` on a copy of ``state`` — or, when the optimiser already has
    state of the same layout (a trial that has trained, loading an exploit's donor), a copy
    into its own tensors.

    Why a copy: ``load_state_dict`` keeps a CPU tensor it is given when the parameter is on the
    CPU too (it only casts), so the optimiser's momentum buffers *are* the state's tensors:
    training on would change a donor's snapshot under every other trial that loads it (an
    exploit can hand one donor state to several targets) and under the coordinator's recovery
    point. Why into its own tensors: for a large model (AdamW moments of gigabytes) a copy into
    new memory faults in every page, and on a GPU a deep copy on the host comes first.
    """
    if not _load_in_place(optimizer, state):
        optimizer.load_state_dict(copy.deepcopy(dict(state)))


def _load_in_place(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> bool:
    """What ``load_state_dict`` does, into the tensors the optimiser holds; False (nothing
    changed) unless groups, parameters, state keys and shapes all match."""
    groups = optimizer.param_groups
    saved_groups, saved = state.get("param_groups"), state.get("state")
    if (not isinstance(saved_groups, list) or not isinstance(saved, Mapping) or not saved
            or len(groups) != len(saved_groups)
            or getattr(optimizer, "_optimizer_load_state_dict_pre_hooks", None)
            or getattr(optimizer, "_optimizer_load_state_dict_post_hooks", None)):
        return False
    params: dict[Any, torch.Tensor] = {}
    for group, old in zip(groups, saved_groups, strict=True):
        if set(group) != set(old) or len(group["params"]) != len(old["params"]):
            return False
        params.update(zip(old["params"], group["params"], strict=True))
    if not set(saved) <= set(params) or \
            {id(params[k]) for k in saved} != {id(p) for p, s in optimizer.state.items() if s}:
        return False
    for key, values in saved.items():
        mine = optimizer.state[params[key]]
        if set(mine) != set(values) or any(
                isinstance(v, torch.Tensor) != isinstance(mine[n], torch.Tensor)
                or (isinstance(v, torch.Tensor) and v.shape != mine[n].shape)
                for n, v in values.items()):
            return False
    with torch.no_grad():
        for key, values in saved.items():
            mine = optimizer.state[params[key]]
            for name, value in values.items():
                if isinstance(value, torch.Tensor):
                    mine[name].copy_(value)  # casts to the parameter's dtype and device
                else:
                    mine[name] = copy.deepcopy(value)
        for group, old in zip(groups, saved_groups, strict=True):
            for name, value in old.items():
                if name == "params":
                    continue
                write_group_value(group, name, copy.deepcopy(value))
    return True


def optimizer_state_to_device(optimizer: torch.optim.Optimizer, device: str | torch.device) -> None:
    """Move a live optimiser's per-parameter state tensors to ``device``, in place.

    Why: after ``model.to(device)`` the optimiser's buffers must follow their parameters. The
    ``step`` counters of non-capturable, non-fused optimisers (Adam family) stay on CPU, since
    torch requires them there.
    """
    target = torch.device(device)
    for group in optimizer.param_groups:
        keep_step_on_cpu = not (group.get("capturable") or group.get("fused"))
        for param in group["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key == "step" and keep_step_on_cpu:
                    continue
                state[key] = value.to(target)


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count; ``None`` leaves it alone. Returns the count in effect.

    Why: a worker slot with one CPU must not run a 16-thread matmul pool (oversubscription makes
    every trial on the node slower). Note the setting is process-wide.
    """
    if threads is not None:
        threads = int(threads)
        if threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return torch.get_num_threads()


def is_finite(x: float | torch.Tensor) -> bool:
    """Whether a scalar (float or one-element tensor) is finite (not NaN, not ±inf)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().item()
    return math.isfinite(float(x))
