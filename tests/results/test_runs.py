"""``pbtune runs``: past runs from their summary.json, newest first (synthetic run dirs)."""

from __future__ import annotations

import pytest

from pbtune.cli import main
from pbtune.results.runs import find_runs
from tests.reporting.synthetic_run import write_run


def test_runs_are_listed_newest_first_with_their_numbers(tmp_path, capsys):
    write_run(tmp_path, "alpha", "2024-01-01_00-00-00", started=1_700_000_000)
    write_run(tmp_path, "beta", "2024-01-03_00-00-00", started=1_700_200_000)
    write_run(tmp_path, "alpha", "2024-01-02_00-00-00", started=1_700_100_000, finished=False)
    runs = find_runs(tmp_path)
    assert [(r.experiment, r.run_id) for r in runs] == [
        ("beta", "2024-01-03_00-00-00"), ("alpha", "2024-01-02_00-00-00"),
        ("alpha", "2024-01-01_00-00-00")]
    assert runs[0].best == pytest.approx(4.6) and runs[0].wall_s == 12.5
    assert runs[0].workload == "toy_workload.py:Counter" and runs[0].trials == 3
    assert runs[1].status == "incomplete" and runs[1].best is None

    assert main(["runs", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["experiment", "run", "id", "date", "workload", "trials", "best",
                                "wall", "status"]
    assert lines[1].split()[:2] == ["beta", "2024-01-03_00-00-00"]
    assert "score 4.6" in lines[1] and "12.5s" in lines[1] and lines[1].endswith("finished")
    assert lines[2].endswith("incomplete")


def test_missing_root_is_a_one_line_error(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: results root")
