"""``pbtune report``: report.html is self-contained and references only files that exist."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from pbtune.cli import main
from pbtune.results.plots import PLOTS
from pbtune.results.report import build_report
from tests.reporting.synthetic_run import write_run

TOY = f"{Path(__file__).parents[1] / 'engines' / 'toy_workload.py'}:Counter"


def check_references(run_dir: Path, page: str) -> list[str]:
    """Every src/href is a data: URI or an existing file inside the run directory; returns them."""
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert not re.search(r"https?://", page), "the page must not need the network"
    for ref in refs:
        if ref.startswith("data:"):
            assert ref.startswith("data:image/png;base64,")
            assert base64.b64decode(ref.split(",", 1)[1]).startswith(b"\x89PNG")
        else:
            assert (run_dir / ref).is_file(), f"report references missing file {ref}"
    return refs


def test_report_of_a_synthetic_run(tmp_path):
    run_dir = write_run(tmp_path)
    (run_dir / "timeline.csv").unlink()  # a missing file must not be linked
    page = build_report(run_dir).read_text()
    refs = check_references(run_dir, page)
    assert sum(r.startswith("data:image/png") for r in refs) == len(PLOTS)
    assert "timeline.csv" not in refs and "trials.csv" in refs
    # best trial and its config, one table row per trial with status, the error escaped
    assert "t000: score = 4.6 at iteration 6" in page
    trials = page.split("<h2>Trials</h2>")[1].split("<h2>")[0]
    rows = re.findall(r"<tr[^>]*><td class=\"l\">(t\d+)</td><td class=\"l\">(?:<span "
                      r"class=\"ERROR\">)?(\w+)", trials)
    assert rows == [("t000", "TERMINATED"), ("t001", "ERROR"), ("t002", "TERMINATED")]
    assert "RuntimeError: boom &lt;&amp;&gt;" in page and "<&>" not in page
    assert "Exploits (2)" in page and "Errors (1)" in page


def test_report_of_an_unfinished_run_says_so(tmp_path):
    run_dir = write_run(tmp_path, finished=False)
    page = build_report(run_dir).read_text()
    check_references(run_dir, page)
    assert "did not finish" in page and "incomplete" in page


def test_report_of_a_missing_directory_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.ray
def test_real_run_writes_plots_and_report_references_existing_files(ray_local, tmp_path, capsys):
    sets = ["population=4", "seed=2", "resources.slots=2", "stop.max_iterations=6",
            "stop.metric_threshold=null", "pbt.perturbation_interval=2"]
    argv = ["run", "--workload", TOY, "--results-dir", str(tmp_path), "--quiet"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    (run_dir,) = [p for p in (tmp_path / "quickstart").iterdir() if p.is_dir()]
    for name in PLOTS:  # drawn at the end of `pbtune run`
        assert (run_dir / "plots" / f"{name}.png").stat().st_size > 5000, name
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    refs = check_references(run_dir, page)
    assert {"config.yaml", "summary.json", "trials.csv", "timeline.csv"} <= set(refs)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{summary['best']['trial_id']}: score = " in page
    for trial in ("t000", "t001", "t002", "t003"):
        assert f'<td class="l">{trial}</td>' in page
    assert main(["runs", str(tmp_path)]) == 0
    assert run_dir.name in capsys.readouterr().out
