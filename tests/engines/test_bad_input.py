"""``pbtune resume`` on bad input: one-line error, exit code 2, nothing changed (no Ray needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pbtune.cli import main
from pbtune.config import dump_yaml
from tests.engines.test_native import toy_config


def fake_run(root: Path) -> Path:
    """A run directory as `pbtune run` leaves it right after starting."""
    run_dir = root / "exp" / "run1"
    run_dir.mkdir(parents=True)
    text = dump_yaml(toy_config())
    (run_dir / "config.yaml").write_text(text)
    header = {"event": "header", "version": 1, "pbtune": "0",
              "config_sha256": hashlib.sha256(text.encode()).hexdigest()}
    (run_dir / "journal.jsonl").write_text(json.dumps(header) + "\n")
    return run_dir


def no_journal(run_dir: Path) -> list[str]:
    (run_dir / "journal.jsonl").unlink()
    return [str(run_dir)]


def other_version(run_dir: Path) -> list[str]:
    path = run_dir / "journal.jsonl"
    path.write_text(json.dumps({"event": "header", "version": 99, "pbtune": "9.0"}) + "\n")
    return [str(run_dir)]


def garbage_journal(run_dir: Path) -> list[str]:
    (run_dir / "journal.jsonl").write_text("hello\nworld\n")
    return [str(run_dir)]


def edited_config(run_dir: Path) -> list[str]:
    path = run_dir / "config.yaml"
    path.write_text(path.read_text().replace("population: 4", "population: 8"))
    return [str(run_dir)]


def changing_override(run_dir: Path) -> list[str]:
    return [str(run_dir), "--set", "population=8"]


def missing_config(run_dir: Path) -> list[str]:
    (run_dir / "config.yaml").unlink()
    return [str(run_dir)]


def tune_run(run_dir: Path) -> list[str]:
    (run_dir / "journal.jsonl").unlink()  # the Tune engine keeps no journal
    path = run_dir / "config.yaml"
    path.write_text(path.read_text().replace("engine: native", "engine: tune"))
    return [str(run_dir)]


CASES = [
    # (id, setup(run_dir) -> argv after "resume", words the message must contain)
    ("run dir does not exist", lambda d: [str(d.parent / "nope")], ["does not exist"]),
    ("run dir is a file", lambda d: [str(d / "config.yaml")], ["not a directory"]),
    ("not a pbtune run", no_journal, ["not a pbtune run directory", "journal.jsonl"]),
    ("journal from another version", other_version, ["version 99", "reads version 1"]),
    ("garbage journal", garbage_journal, ["not valid JSON"]),
    ("config edited between run and resume", edited_config, ["was edited", "restore it"]),
    ("override changes the experiment", changing_override, ["population=8", "stored config"]),
    ("config.yaml missing", missing_config, ["config.yaml", "missing"]),
    ("a Tune engine run", tune_run, ["engine: tune", "native engine only", "pbtune run"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_resume_input_exits_2_and_changes_nothing(case, tmp_path, capsys):
    _, setup, words = case
    run_dir = fake_run(tmp_path)
    argv = setup(run_dir)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["resume", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_harmless_override_is_accepted(tmp_path):
    from pbtune.api.resuming import load_run

    run_dir = fake_run(tmp_path)
    cfg, header, events = load_run(run_dir, ["population=4"], None)
    assert cfg.population == 4 and header["version"] == 1 and events == []
