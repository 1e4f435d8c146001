"""Command-line inputs that used to be misread (issue 14 item 10); no Ray needed."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pytest

from pbtune.cli._common import resolved_config
from pbtune.errors import UserError
from pbtune.pbt.explore import load_callable
from pbtune.workloads.registry import get

COUNTER = Path(__file__).parents[1] / "engines" / "toy_workload.py"


def args(**kw) -> argparse.Namespace:
    base = {"config": None, "set": ["stop.max_iterations=4", "pbt.perturbation_interval=2"],
            "workload": None, "seed": None, "engine": None, "address": None}
    return argparse.Namespace(**{**base, **kw})


def test_a_hash_in_a_workload_path_is_part_of_the_path(tmp_path):
    folder = tmp_path / "exp#1"
    folder.mkdir()
    shutil.copy(COUNTER, folder / "toy.py")
    cfg = resolved_config(args(workload=f"{folder}/toy.py:Counter"))
    assert cfg.workload == f"{folder.resolve()}/toy.py:Counter"


def test_a_relative_workload_path_is_stored_absolute(tmp_path, monkeypatch):
    shutil.copy(COUNTER, tmp_path / "toy.py")
    monkeypatch.chdir(tmp_path)
    cfg = resolved_config(args(workload="toy.py:Counter"))
    assert cfg.workload == f"{tmp_path.resolve()}/toy.py:Counter"  # resume works from anywhere


def test_a_workload_that_exits_on_import_is_a_user_error(tmp_path):
    path = tmp_path / "exits.py"
    path.write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(UserError, match=r"called sys.exit\(0\); guard"):
        get(f"{path}:W")


def test_custom_explore_fn_is_importable_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_explore_mod.py").write_text("def fn(config):\n    return config\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_callable("my_explore_mod:fn")({"a": 1}) == {"a": 1}
