"""Workload registry: ``register`` / ``create`` / ``list_workloads`` / ``get``.

Why: the CLI, config validation and contract tests all look workloads up by name; an unknown name
must fail with the list of valid ones. ``get`` also accepts a user's own class as
``path/to/file.py:ClassName`` or ``package.module:ClassName`` (bring your own workload), checked
against the interface so a missing method is named instead of failing mid-run.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pbtune.errors import UserError
from pbtune.workloads.base import Workload, missing_methods

W = TypeVar("W", bound=type[Workload])

_REGISTRY: dict[str, type[Workload]] = {}
#: Names whose module is imported only when first asked for (heavy imports such as torchvision
#: are then paid only by processes that use them).
_LAZY: dict[str, str] = {}


def register_lazy(name: str, module: str) -> None:
    """Record that importing ``module`` registers workload ``name``."""
    _LAZY[name] = module


def register(name: str | None = None) -> Callable[[W], W]:
    """Class decorator recording a workload under ``name`` (default: the class's ``name``)."""

    def deco(cls: W) -> W:
        key = name or cls.name
        if not key:
            raise ValueError(f"workload class {cls.__qualname__} has no name")
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"workload {key!r} is already registered by {_REGISTRY[key]!r}")
        cls.name = key
        _REGISTRY[key] = cls
        return cls

    return deco


def list_workloads() -> list[str]:
    """Registered workload names (imported or lazy), sorted."""
    _ensure_builtins()
    return sorted(set(_REGISTRY) | set(_LAZY))


def _load_from_path(spec: str) -> type:
    target, _, cls_name = spec.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise UserError(f"workload file {path} does not exist; pass path/to/file.py:ClassName")
        mod_name = f"pbtune_user_{path.stem}_{abs(hash(path.resolve()))}"
        mod_spec = importlib.util.spec_from_file_location(mod_name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise UserError(f"cannot import workload file {path}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = module
        try:
            mod_spec.loader.exec_module(module)
        except SystemExit as exc:  # script code run on import: not a reason to end pbtune
            raise UserError(f"importing {path} called sys.exit({exc.code!r}); guard the "
                            "module's script code with `if __name__ == \"__main__\":`") from exc
        except Exception as exc:  # user code: report, do not crash with a traceback
            raise UserError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except SystemExit as exc:
            raise UserError(f"importing {target} called sys.exit({exc.code!r}); guard the "
                            "module's script code with `if __name__ == \"__main__\":`") from exc
        except ImportError as exc:
            raise UserError(
                f"cannot import module {target!r} for workload {spec!r}: {exc}; "
                "check the module is on PYTHONPATH or pass path/to/file.py:ClassName"
            ) from exc
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise UserError(f"{target} has no class {cls_name!r} (workload {spec!r})")
    return cls


def validate_workload_class(cls: Any, spec: str) -> type[Workload]:
    """Check a user-supplied class against the interface; a UserError names what is missing."""
    if not isinstance(cls, type):
        raise UserError(f"workload {spec!r} is not a class")
    missing = missing_methods(cls)
    if missing:
        raise UserError(
            f"workload {spec!r} does not implement the Workload interface: missing "
            f"{', '.join(missing)} (see pbtune.workloads.base.Workload)"
        )
    metrics = getattr(cls, "metrics", None)
    if not isinstance(metrics, Mapping) or not metrics:
        raise UserError(
            f"workload {spec!r} declares no metrics; set the class attribute "
            "metrics = {'accuracy': 'max', ...}"
        )
    for metric, mode in metrics.items():
        if mode not in ("max", "min"):
            raise UserError(
                f"workload {spec!r}: metric {metric!r} has mode {mode!r}; use max or min"
            )
    default_metric = getattr(cls, "default_metric", "") or next(iter(metrics))
    if default_metric not in metrics:
        raise UserError(
            f"workload {spec!r}: default_metric {default_metric!r} is not among its metrics "
            f"{sorted(metrics)}"
        )
    if not getattr(cls, "name", ""):
        cls.name = spec
    return cls


def get(name: str) -> type[Workload]:
    """The workload class for a registered name or a ``module:Class`` / ``file.py:Class`` spec."""
    _ensure_builtins()
    if name not in _REGISTRY and name in _LAZY:
        importlib.import_module(_LAZY[name])
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return validate_workload_class(_load_from_path(name), name)
    raise UserError(
        f"unknown workload {name!r}; valid: {', '.join(list_workloads())} "
        "(or path/to/file.py:ClassName)"
    )


def create(name: str, config: Mapping[str, Any] | None = None, **kwargs: Any) -> Workload:
    """Instantiate a workload by name; ``kwargs`` (data, options, seed, device) go to it."""
    return get(name)(config or {}, **kwargs)


def _ensure_builtins() -> None:
    # Importing the package registers the built-in workloads (digits-cnn, vision, ...).
    importlib.import_module("pbtune.workloads")


def canonical_spec(name: str) -> str:
    """A spec that resolves the same in any process: ``file.py:Class`` paths become absolute.

    Ray workers do not share the driver's working directory, so a relative file path given on
    the command line must be made absolute before it is sent to them.
    """
    target, sep, cls_name = name.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target):
        return f"{Path(target).expanduser().resolve()}:{cls_name}"
    return name


def load_data(cls: type[Workload], options: Mapping[str, Any]) -> Any:
    """``cls.load_data(options)``, with a workload's failure as a one-line :class:`UserError`.

    Why: the data is loaded before training starts (once, on the driver); a missing file or a
    bug there should end the command with one line naming the workload and the error, not a
    traceback. A :class:`UserError` the workload raises itself (a data file to place) passes
    through unchanged.
    """
    try:
        return cls.load_data(options)
    except UserError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"workload {cls.name or cls.__name__}: load_data failed with "
                        f"{type(exc).__name__}: {first} (check the workload's data files and "
                        "options)") from exc


# torch itself, or the bases and libraries built on it (a workload on TorchWorkload or
# VisionWorkload imports torch through them).
_TORCH_IMPORT = re.compile(
    r"^\s*(import|from)\s+(torch|torchvision|transformers|pbtune\.workloads\.(vision|torch_workload"
    r"|gan|digits|hf_qa|models))\b|^\s*from pbtune import .*TorchWorkload", re.MULTILINE)


def imports_torch(spec: str) -> bool:
    """Whether a workload's module imports torch, read from its source without importing it.

    Why: a local Ray started for a torch workload can have its worker processes import torch
    while the driver starts (``preload_python_modules``: a second or more off the start of every
    worker); a torch-free workload (``pbt-toy``) must not pay for that. A guess only ever costs
    time: an unreadable or unknown spec is taken as not importing torch.
    """
    _ensure_builtins()
    target = _LAZY.get(spec) or (spec.rsplit(":", 1)[0] if ":" in spec else None)
    if target is None and spec in _REGISTRY:
        target = _REGISTRY[spec].__module__
    try:
        if target is None:
            return False
        if target.endswith(".py"):
            return bool(_TORCH_IMPORT.search(Path(target).expanduser().read_text()))
        found = importlib.util.find_spec(target)
        origin = found.origin if found is not None else None
        return bool(origin and _TORCH_IMPORT.search(Path(origin).read_text()))
    except (OSError, ImportError, ValueError, UnicodeDecodeError):
        return False
