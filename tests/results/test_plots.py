"""Plots drawn from a run directory's files (synthetic run dir: fast, no Ray)."""

from __future__ import annotations

import pytest

from pbtune.errors import UserError
from pbtune.results.plots import PLOTS, make_plots
from tests.reporting.synthetic_run import write_run

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_plot_is_a_non_empty_png(tmp_path):
    run_dir = write_run(tmp_path)
    paths = make_plots(run_dir)
    assert sorted(paths) == sorted(PLOTS)
    for name in PLOTS:
        path = run_dir / "plots" / f"{name}.png"
        assert paths[name] == path
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name  # a real image, not a stub


def test_a_run_without_results_still_gets_every_plot(tmp_path):
    run_dir = write_run(tmp_path, finished=False)
    for name in ("trials.csv", "timeline.csv", "pbt_global.txt"):
        (run_dir / name).unlink()
    make_plots(run_dir)
    for name in PLOTS:
        assert (run_dir / "plots" / f"{name}.png").read_bytes().startswith(PNG)


def test_not_a_run_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a run directory"):
        make_plots(tmp_path)
