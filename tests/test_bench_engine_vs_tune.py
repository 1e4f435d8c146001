"""bench/engine_vs_tune.py's judging logic: per-repeat ratios and the medians the targets use."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import engine_vs_tune as bench


def _rows(ours_wall: float, tune_wall: float, ours_best: float, tune_best: float) -> dict:
    return {"pbtune": {"wall_s": ours_wall - 3, "wall_end_to_end_s": ours_wall, "efficiency": 0.95,
                       "best": {"metric": ours_best}, "exploits": 8},
            "tune": {"wall_s": tune_wall, "efficiency": 0.18, "best": {"metric": tune_best},
                     "exploits": 6}}


def test_single_run_checks() -> None:
    ratios, checks = bench.compare(_rows(20.0, 79.0, 0.97, 0.97))
    assert ratios["wall Tune/pbtune"] == 3.95 and not checks["wall <= Tune/4"]
    assert checks["efficiency >= 0.90"] and checks["best accuracy >= Tune's"]


def test_medians_over_repeats_judge_the_targets() -> None:
    repeats = [_rows(20.0, 79.0, 0.97, 0.98), _rows(16.0, 80.0, 0.98, 0.97),
               _rows(17.0, 85.0, 0.98, 0.975)]
    text, out, checks = bench.summarize(repeats)
    assert out["ratios"]["wall Tune/pbtune"] == 5.0  # median of 3.95, 5.0, 5.0
    assert out["medians"]["pbtune"]["wall"] == 17.0 and out["medians"]["tune"]["best"] == 0.975
    assert checks == {"median efficiency >= 0.90": True, "median wall ratio >= 4": True,
                      "median best accuracy >= Tune's": True}
    assert "(per repeat: 3.95, 5.00, 5.00)" in text and "medians over 3 repeats" in text


def test_vary_seed_gives_each_repeat_its_own_population() -> None:
    from pbtune.engines.population import initial_trials

    args = bench.parse_args(["--vary-seed", "--repeats", "2"])
    assert args.vary_seed and args.seed == 0
    first = bench.build_config(args)
    second = bench.build_config(bench.argparse.Namespace(**{**vars(args), "seed": 1}))
    assert second.seed == 1 and first.seed == 0
    assert [t.config for t in initial_trials(first)] != [t.config for t in initial_trials(second)]
    assert not bench.parse_args([]).vary_seed


def test_median_ratio_is_not_rounded_up_to_the_target() -> None:
    # Run H: 58.36 / 14.6 = 3.997 is printed as 4.00, but it must fail the >= 4 check.
    repeats = [_rows(14.6, 58.36, 0.98, 0.97)] * 3
    text, out, checks = bench.summarize(repeats)
    assert out["ratios"]["wall Tune/pbtune"] < 4 and not checks["median wall ratio >= 4"]
    assert "4.00" in text


def test_accuracy_line_counts_seed_by_seed_outcomes() -> None:
    # Run N's pattern: the medians differ by one image while the means favour pbtune.
    best = [(0.9778, 0.9750), (0.9778, 0.9861), (0.9806, 0.9806), (0.9778, 0.9778),
            (0.9889, 0.9806)]
    repeats = [_rows(13.0, 55.0, ours, tune) for ours, tune in best]
    text, _, checks = bench.summarize(repeats)
    assert not checks["median best accuracy >= Tune's"]
    assert "pbtune vs Tune: 2 higher, 2 equal, 1 lower; means 0.9806 vs 0.9800" in text


def test_render_names_pbtune_trial_errors_and_tune_failures() -> None:
    rows = _rows(13.0, 55.0, 0.98, 0.98)
    for row in rows.values():
        row.update(compute_s=20.0, iterations=80, efficiency_end_to_end=0.7)
    rows["pbtune"]["errors"] = {"t006": "non-finite metric or loss at iteration 10"}
    rows["tune"]["errors"] = ["Could not recover from checkpoint"]
    ratios, checks = bench.compare(rows)
    text = bench.render(rows, ratios, checks, {"seed": 6})
    assert "pbtune: 1 trial(s) ended in ERROR, first t006: non-finite metric" in text
    assert "tune: 1 trial(s) FAILED, the row is not a valid baseline: Could not recover" in text
