"""Damaged run folders: one line naming the damaged file, exit 2; ``runs`` skips and names them
(issue 14 item 9). No Ray: the folders are synthetic."""

from __future__ import annotations

import pytest

from pbtune.cli import main
from tests.reporting.synthetic_run import write_run


def damage(run_dir, name: str, how: str) -> None:
    path = run_dir / name
    if how == "garbage":
        path.write_bytes(b"\x00\x01 not,a\ncsv\"\n\xff\xfe")
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "yaml":
        path.write_text("workload: [unclosed\n  - : :\n")


@pytest.mark.parametrize("name,how,named", [
    ("trials.csv", "garbage", "trials.csv is damaged"),
    ("summary.json", "truncate", "summary.json is damaged"),
])
def test_report_on_a_damaged_file_is_one_line(tmp_path, capsys, name, how, named):
    run_dir = write_run(tmp_path)
    damage(run_dir, name, how)
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0]


def test_a_half_written_last_decision_is_ignored(tmp_path):
    run_dir = write_run(tmp_path)
    with (run_dir / "pbt_global.txt").open("a") as f:
        f.write('["t001", "t0')  # killed while appending
    assert main(["report", str(run_dir)]) == 0


def test_runs_skips_and_names_damaged_runs(tmp_path, capsys):
    good = write_run(tmp_path, "exp", "2024-01-01_00-00-00")
    bad = write_run(tmp_path, "exp", "2024-01-02_00-00-00")
    half = write_run(tmp_path, "exp", "2024-01-03_00-00-00")
    damage(bad, "config.yaml", "yaml")
    damage(half, "summary.json", "truncate")
    assert main(["runs", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert good.name in captured.out
    assert bad.name not in captured.out and half.name not in captured.out
    assert f"skipped damaged run {bad}: config.yaml is unreadable" in captured.err
    assert f"skipped damaged run {half}: summary.json is unreadable" in captured.err


def test_replay_on_a_damaged_trials_csv_is_one_line(tmp_path, capsys):
    run_dir = write_run(tmp_path)
    damage(run_dir, "trials.csv", "garbage")
    assert main(["replay", str(run_dir), "--trial", "t000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trials.csv is damaged" in err[0]
