"""``pbtune.resume`` from Python after the run's driver was killed mid-run (SIGKILL: nothing of
it ran on exit): the Result it returns is the complete run, every (trial, iteration) row once."""

from __future__ import annotations

import pytest

import pbtune
from tests.engines.test_resume import assert_complete, sigkill_driver_after_cut

pytestmark = pytest.mark.ray


def test_api_resume_after_sigkill_returns_the_complete_run(ray_local, tmp_path, capsys):
    run_dir = sigkill_driver_after_cut(tmp_path)
    assert not (run_dir / "summary.json").exists()
    result = pbtune.resume(run_dir, progress=False)
    assert isinstance(result, pbtune.Result) and result.run_dir == run_dir
    assert_complete(run_dir, 12)
    assert 4 <= result.summary["resumed_from"] < 12
    assert len(result.trials) == 4 * 12 and result.best() == pbtune.load(run_dir).best()
    with pytest.raises(pbtune.UserError, match="does not exist"):
        pbtune.resume(tmp_path / "no-such-run", progress=False)
