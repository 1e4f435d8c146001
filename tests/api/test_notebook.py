"""The FashionMNIST comparison notebook, executed end to end (nbclient) at the tiny budget.

Offline it must say it runs the digits FALLBACK and still produce the whole comparison: the table
of the four methods, the accuracy-against-time plot, PBT's schedules and metric plots. With
FashionMNIST files present (tiny ones in the real gzip'd IDX format) it uses them and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(REPO) / "examples" / "fashionmnist_comparison.ipynb"
pytestmark = pytest.mark.ray


def _execute(tmp_path: Path, **parameters: object) -> list[dict]:
    """Run the notebook with its `parameters` cell replaced; returns every output."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    (tmp_path / "executed.ipynb").write_text(json.dumps(nb))  # kept for a failure's post-mortem
    return [out for c in nb.cells if c.cell_type == "code" for out in c.get("outputs", [])]


def _text(outputs: list[dict]) -> str:
    parts = []
    for out in outputs:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_the_notebook_runs_offline_on_the_labelled_digits_fallback(tmp_path: Path) -> None:
    outputs = _execute(tmp_path, budget="tiny", data_dir=str(tmp_path / "data"),
                       results_dir=str(tmp_path / "results"),
                       extra_overrides={"resources.slots": 2})
    text = _text(outputs)
    assert "FALLBACK" in text and "data set: FALLBACK" in text
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "accuracy vs time, PBT schedules, PBT metric"
    for method in ("baseline", "random", "asha", "native-pbt"):
        assert method in text
        assert list((tmp_path / "results").glob(f"*-{method}/*/trials.csv")), method
    assert "accuracy vs baseline" in text


def test_the_notebook_uses_fashionmnist_files_when_present(tmp_path: Path) -> None:
    from pbtune.workloads import synthetic

    synthetic.write_fashion_mnist(tmp_path / "data", n_train=64, n_test=16)
    outputs = _execute(tmp_path, budget="tiny", data_dir=str(tmp_path / "data"),
                       results_dir=str(tmp_path / "results"), methods=("baseline", "native-pbt"),
                       extra_overrides={"resources.slots": 2, "options.verify_checksums": False,
                                        "options.val_size": 16, "options.width": 16,
                                        "options.threads": 1})
    text = _text(outputs)
    assert "FALLBACK" not in text and "data set: FashionMNIST" in text
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert list((tmp_path / "results").glob("*-native-pbt/*/trials.csv"))
