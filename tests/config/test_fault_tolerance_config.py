"""The ``fault_tolerance`` section: defaults, ranges, unknown keys."""

from __future__ import annotations

import pytest

from pbtune.config import load_config
from pbtune.errors import UserError


def test_defaults():
    cfg = load_config(None, [], env={})
    assert cfg.fault_tolerance.max_failures == 3 and cfg.fault_tolerance.keep_checkpoints == 2


def test_override_and_ranges():
    cfg = load_config(None, ["fault_tolerance.max_failures=0"], env={})
    assert cfg.fault_tolerance.max_failures == 0
    with pytest.raises(UserError, match=r"fault_tolerance\.keep_checkpoints"):
        load_config(None, ["fault_tolerance.keep_checkpoints=0"], env={})
    with pytest.raises(UserError, match="max_failure"):
        load_config(None, ["fault_tolerance.max_failure=2"], env={})
