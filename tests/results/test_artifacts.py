"""Per-trial images at each trial's best iteration (``plots/<name>_<trial>.png``): written only
when the trial improves, atomically, with an index the report reads; a resumed run starts from
the bests already in trials.csv; a malformed image is a warning, not a failed run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pbtune.engines.base import Trial
from pbtune.results.artifacts import ArtifactWriter, png_bytes, read_index
from pbtune.results.report import build_report


def _grid(level: int) -> np.ndarray:
    return np.full((10, 12), level, dtype=np.uint8)


def _index(run_dir: Path) -> dict:
    return json.loads((run_dir / "plots" / "artifacts.json").read_text())


def test_keeps_each_trials_best_iteration_only(tmp_path: Path) -> None:
    writer = ArtifactWriter(tmp_path, "score", "max")
    t0, t1 = Trial("t000", {}, 0), Trial("t001", {}, 1)
    writer.on_artifacts(t0, {"iteration": 1, "score": 0.5}, {"samples": _grid(10)})
    first = (tmp_path / "plots" / "samples_t000.png").read_bytes()
    writer.on_artifacts(t0, {"iteration": 2, "score": 0.4}, {"samples": _grid(200)})  # worse
    writer.on_artifacts(t0, {"iteration": 3, "score": math.nan}, {"samples": _grid(200)})
    writer.on_artifacts(t1, {"iteration": 1, "score": 0.1}, {"samples": _grid(50)})
    assert (tmp_path / "plots" / "samples_t000.png").read_bytes() == first
    assert _index(tmp_path)["t000"]["samples"] == {"iteration": 1, "metric": 0.5,
                                                   "file": "samples_t000.png"}
    writer.on_artifacts(t0, {"iteration": 4, "score": 0.9}, {"samples": _grid(200)})
    assert (tmp_path / "plots" / "samples_t000.png").read_bytes() != first
    assert _index(tmp_path)["t000"]["samples"]["iteration"] == 4
    assert set(read_index(tmp_path)) == {"t000", "t001"}
    assert not list((tmp_path / "plots").glob("*.tmp*"))  # atomic writes leave nothing behind


def test_mode_min_and_resume_from_trials_csv(tmp_path: Path) -> None:
    (tmp_path / "trials.csv").write_text("trial_id,iteration,loss\nt000,1,0.3\nt000,2,0.2\n"
                                         "t001,1,nan\n")
    writer = ArtifactWriter(tmp_path, "loss", "min")
    writer.on_artifacts(Trial("t000", {}, 0), {"iteration": 3, "loss": 0.25},
                        {"samples": _grid(1)})  # not better than the kept 0.2
    assert not (tmp_path / "plots" / "samples_t000.png").exists()
    writer.on_artifacts(Trial("t001", {}, 1), {"iteration": 2, "loss": 5.0},
                        {"samples": _grid(1)})  # its only kept value was NaN: any finite wins
    assert (tmp_path / "plots" / "samples_t001.png").is_file()


def test_a_malformed_image_is_one_warning(tmp_path: Path, capsys) -> None:
    writer = ArtifactWriter(tmp_path, "score", "max")
    for it in (1, 2):
        writer.on_artifacts(Trial("t000", {}, 0), {"iteration": it, "score": it},
                            {"samples": np.zeros(5)})
    err = capsys.readouterr().err
    assert err.count("warning: artifact 'samples' of t000 not written") == 1
    assert "expected an (H, W) or (H, W, 3) image, got shape (5,)" in err
    with pytest.raises(ValueError):
        png_bytes(np.zeros((2, 2, 7)))
    assert png_bytes(np.linspace(0, 1, 12).reshape(3, 4)).startswith(b"\x89PNG")


def test_the_report_shows_each_trials_samples(tmp_path: Path) -> None:
    (tmp_path / "trials.csv").write_text("trial_id,iteration,score\nt000,1,0.5\n")
    ArtifactWriter(tmp_path, "score", "max").on_artifacts(
        Trial("t000", {}, 0), {"iteration": 1, "score": 0.75}, {"samples": _grid(99)})
    page = build_report(tmp_path, plots=False).read_text()
    assert "<h2>Samples at each trial's best iteration</h2>" in page
    assert "t000: samples at iteration 1, metric = 0.75" in page
