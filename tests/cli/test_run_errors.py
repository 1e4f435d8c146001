"""`pbtune run` on bad input: one-line error, exit code 2, nothing written (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbtune.cli import main


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CASES = [
    # (id, config text or None, extra args, words the message must contain)
    ("missing file", None, ["does-not-exist.yaml"], ["does-not-exist.yaml", "not found"]),
    ("malformed yaml", "population: [1, 2\n", [], ["yaml", "line"]),
    ("top level not a mapping", "- 1\n- 2\n", [], ["mapping"]),
    ("unknown key", "populaton: 4\n", [], ["populaton", "population"]),
    ("unknown nested key", "pbt:\n  quantile: 0.2\n", [], ["pbt.quantile", "quantile_fraction"]),
    ("unknown workload", "workload: resnet9000\n", [], ["resnet9000", "digits-cnn"]),
    ("population below 2", "population: 1\n", [], ["population"]),
    ("quantile above 0.5", "pbt:\n  quantile_fraction: 0.7\n", [], ["quantile_fraction", "0.5"]),
    ("quantile zero", "pbt:\n  quantile_fraction: 0\n", [], ["quantile_fraction"]),
    ("non-positive interval", "pbt:\n  perturbation_interval: 0\n", [],
     ["perturbation_interval"]),
    ("metric not reported", "metric: f1\n", [], ["f1", "accuracy"]),
    ("mutation of unknown hyperparameter",
     "pbt:\n  hyperparam_mutations:\n    dropout: [0.1, 0.2]\n", [], ["dropout", "lr"]),
    ("bad --set", "", ["--set", "population"], ["population", "="]),
    ("bad domain", "param_space:\n  lr: {loguniform: [0, 0.1]}\n", [], ["lr", "loguniform"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    _, text, extra, words = case
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    args = ["run", "--results-dir", str(results)]
    if text is not None:
        args.append(write(tmp_path, "exp.yaml", text))
    args += extra
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in err.lower(), (word, err)
    assert not results.exists(), "a bad input must not create the results directory"


def test_existing_results_are_not_touched_on_error(tmp_path, capsys):
    results = tmp_path / "results"
    keep = results / "quickstart" / "old-run" / "summary.json"
    keep.parent.mkdir(parents=True)
    keep.write_text("{}")
    code = main(["run", "--results-dir", str(results), "--set", "population=1"])
    assert code == 2
    assert keep.read_text() == "{}"
    assert sorted(p.name for p in (results / "quickstart").iterdir()) == ["old-run"]


def test_workloads_command_lists_registry(capsys):
    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    assert "digits-cnn" in out and "accuracy (max)" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "run" in capsys.readouterr().out
