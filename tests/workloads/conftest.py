"""Per-workload options for the contract test, gathered from ``fixtures_*.py`` files.

Why: the contract test runs every registered workload, and some need data files or are too slow
at their defaults. Each workload family ships a ``tests/workloads/fixtures_<family>.py`` defining
``OPTIONS_FACTORIES = {"<workload name>": factory}`` where ``factory(tmp_path) -> options`` may
write tiny data files into ``tmp_path``. Adding such a file is all it takes: it is picked up here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

OptionsFactory = Callable[[Path], dict[str, Any]]

_HERE = Path(__file__).resolve().parent


def _import_fixture_module(path: Path) -> ModuleType:
    if __package__:  # tests/ is a package: import normally so fixtures may import each other
        return importlib.import_module(f"{__package__}.{path.stem}")
    name = f"_pbtune_workload_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_options_factories(directory: Path = _HERE) -> dict[str, OptionsFactory]:
    """Merge ``OPTIONS_FACTORIES`` from every ``fixtures_*.py`` in ``directory``.

    A file without the dict, or two files claiming the same workload, is an error: silently
    dropping one would leave a workload tested with the wrong options.
    """
    factories: dict[str, OptionsFactory] = {}
    owner: dict[str, str] = {}
    for path in sorted(directory.glob("fixtures_*.py")):
        table = getattr(_import_fixture_module(path), "OPTIONS_FACTORIES", None)
        if not isinstance(table, dict):
            raise TypeError(f"{path.name} must define a dict OPTIONS_FACTORIES")
        for name, factory in table.items():
            if name in factories:
                raise ValueError(f"workload {name!r} has options in {owner[name]} and {path.name}")
            factories[name], owner[name] = factory, path.name
    return factories


OPTIONS_FACTORIES: dict[str, OptionsFactory] = load_options_factories()


@pytest.fixture(scope="session")
def options_factories() -> dict[str, OptionsFactory]:
    """Workload name → ``factory(tmp_path) -> options`` for tests."""
    return OPTIONS_FACTORIES


@pytest.fixture
def one_thread():
    """Single-threaded torch for the test (bit-for-bit comparisons), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
