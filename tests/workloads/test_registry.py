"""Registry look-ups: names, ``file.py:Class`` and ``module:Class`` specs, and their errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pbtune.errors import UserError
from pbtune.workloads import create, get, list_workloads, register
from pbtune.workloads.digits import DigitsCNN

REPO = Path(__file__).resolve().parents[2]

VALID = '''
from __future__ import annotations

from pbtune.workloads.base import Workload


class Mini(Workload):
    metrics = {"score": "max"}
    default_metric = "score"
    hyperparameters = ("lr",)
    default_config = {"lr": 0.5}

    @classmethod
    def load_data(cls, options):
        return None

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.value = 0.0

    def train(self, iterations=1):
        self.value += iterations * self.config["lr"]
        self.iteration += iterations
        return {"loss": -self.value}

    def evaluate(self):
        return {"score": self.value}

    def get_state(self):
        return {"value": self.value, "iteration": self.iteration, "config": dict(self.config)}

    def set_state(self, state, *, include_rng=True):
        self.value, self.iteration = state["value"], state["iteration"]

    def apply_hyperparameters(self, config):
        self.config.update(config)
'''


def _write(tmp_path: Path, source: str, name: str = "user_workload.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_builtin_names() -> None:
    assert "digits-cnn" in list_workloads()
    assert get("digits-cnn") is DigitsCNN
    workload = create("digits-cnn", {"lr": 0.01}, options={"width": 2, "threads": 1}, seed=3)
    assert isinstance(workload, DigitsCNN) and workload.config["lr"] == 0.01


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(UserError, match="digits-cnn") as info:
        get("no-such-workload")
    assert "no-such-workload" in str(info.value)


def test_register_rejects_a_second_class_under_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("digits-cnn")(type("Impostor", (DigitsCNN,), {}))


def test_file_spec_loads_a_valid_class(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)
    cls = get(f"{path}:Mini")
    assert cls.__name__ == "Mini" and cls.name  # named after the spec when it has no name
    workload = cls({}, seed=0)
    workload.train(2)
    assert workload.evaluate() == {"score": 1.0}


def test_file_spec_missing_method_is_named(tmp_path: Path) -> None:
    source = VALID.replace("    def evaluate(self):\n        return {\"score\": self.value}\n", "")
    assert "def evaluate" not in source
    path = _write(tmp_path, source)
    with pytest.raises(UserError, match="evaluate"):
        get(f"{path}:Mini")


def test_file_spec_without_metrics_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace('metrics = {"score": "max"}', "metrics = {}"))
    with pytest.raises(UserError, match="metrics"):
        get(f"{path}:Mini")


def test_file_spec_bad_default_metric_and_mode(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace('default_metric = "score"', 'default_metric = "acc"'))
    with pytest.raises(UserError, match="default_metric"):
        get(f"{path}:Mini")
    path = _write(tmp_path, VALID.replace('{"score": "max"}', '{"score": "up"}'), "mode.py")
    with pytest.raises(UserError, match="max or min"):
        get(f"{path}:Mini")


def test_file_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        get(f"{tmp_path / 'absent.py'}:Mini")
    path = _write(tmp_path, VALID)
    with pytest.raises(UserError, match="no class 'Maxi'"):
        get(f"{path}:Maxi")
    broken = _write(tmp_path, "raise RuntimeError('boom')\n", "broken.py")
    with pytest.raises(UserError, match="boom"):
        get(f"{broken}:Mini")


def test_module_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert get("pbtune.workloads.digits:DigitsCNN") is DigitsCNN
    _write(tmp_path, VALID, "pbtune_test_user_mod.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get("pbtune_test_user_mod:Mini").__name__ == "Mini"
    with pytest.raises(UserError, match="cannot import module"):
        get("pbtune_no_such_module_xyz:Mini")


@pytest.mark.parametrize("name", [*list_workloads(), "tests/engines/toy_workload.py:Counter",
                                  "tests/engines/gang_workload.py:Regress"])
def test_imports_torch_reads_what_importing_does(name):
    """The source check that decides whether Ray's workers preload torch agrees with what
    importing the workload really does, for every built-in and a file workload of each kind."""
    import subprocess
    import sys

    from pbtune.workloads.registry import imports_torch

    probe = ("import sys; from pbtune.workloads.registry import get; "
             f"get({name!r}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert imports_torch(name) == (out.stdout.strip() == "True")
