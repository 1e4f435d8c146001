"""``scheduling`` names a registered dispatcher: any registered one loads, others are user errors.

Why: the valid names come from ``DISPATCHERS``, not a list in the schema, so a new dispatcher needs
no schema edit, and a typo must still fail before anything starts, in one line with exit code 2.
"""

from __future__ import annotations

import pytest

from pbtune.cli import main
from pbtune.config import load_config
from pbtune.engines.dispatch import DISPATCHERS, Dispatcher
from pbtune.errors import UserError


@pytest.mark.parametrize("name", DISPATCHERS.names())
def test_every_registered_dispatcher_is_a_valid_scheduling(name):
    assert load_config(None, [f"scheduling={name}"], env={}).scheduling == name


def test_default_is_affinity():
    assert load_config(None, env={}).scheduling == "affinity"


def test_a_newly_registered_dispatcher_needs_no_schema_edit():
    @DISPATCHERS.register("test-only")
    class TestOnly(Dispatcher):
        def assign(self, idle, runnable, running, *, speeds, mode, length):
            return []

    try:
        assert load_config(None, ["scheduling=test-only"], env={}).scheduling == "test-only"
    finally:
        DISPATCHERS._classes.pop("test-only", None)


def test_unknown_name_is_one_line_error_listing_the_valid_ones():
    with pytest.raises(UserError) as info:
        load_config(None, ["scheduling=nope"], env={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith('config error: scheduling = "nope": unknown dispatcher \'nope\'')
    for name in ("'affinity'", "'fifo'", "'speed-aware'"):
        assert name in message, message


def test_cli_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    code = main(["run", "--results-dir", str(results), "--set", "scheduling=nope", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: config error: scheduling = ") and "\n" not in err, err
    assert "unknown dispatcher 'nope'" in err
    assert not results.exists()
