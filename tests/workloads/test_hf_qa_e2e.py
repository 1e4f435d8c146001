"""``hf-qa`` through a real native run (Ray) on a toy BLOOM: PBT with exploits, on the
large-state path its ``large_state`` flag selects (states stay on their workers, the donor's
state is copied once to its target, the workers write the checkpoints and the best state)."""

from __future__ import annotations

import pytest
import torch

import pbtune
from pbtune.store.checkpoints import CheckpointStore, load_state
from pbtune.store.journal import read_journal
from tests.workloads.fixtures_hf import write_toy_bloom

pytest.importorskip("transformers")
pytestmark = pytest.mark.ray


def test_pbt_of_a_toy_bloom_on_held_states(ray_local, tmp_path):
    options = write_toy_bloom(tmp_path / "hf")
    result = pbtune.run(workload="hf-qa", results_dir=tmp_path / "runs", progress=False,
                        plots=False, overrides={
        "population": 4, "resources.slots": 2, "stop.max_iterations": 3,
        "stop.metric_threshold": None, "pbt.perturbation_interval": 1,
        "pbt.quantile_fraction": 0.25, "checkpoint_interval": 1, "options": options,
        "param_space": {"lr": {"loguniform": [1e-4, 1e-2]}, "per_device_bs": [1, 2]}})
    s = result.summary
    assert s["errors"] == {} and s["iterations"] == 12 and s["exploits"] > 0
    frame = result.trials
    assert {"eval_loss", "exact_match", "f1"} <= set(frame)
    _header, events = read_journal(result.run_dir)
    store = CheckpointStore(result.run_dir)
    ckpts = [e for e in events if e["event"] == "checkpoint"]
    assert {e["iteration"] for e in ckpts} == {1, 2, 3}
    final = [e for e in ckpts if e["iteration"] == 3]
    for e in final:  # written by the workers: verified, loadable, the trial's own state
        store.verify(e)
        state = store.load(e)
        assert state["iteration"] == 3 and "scaler" in state and state["scheduler"] is not None
    best = load_state(result.run_dir / "best_model.pt")
    assert best["iteration"] == s["best"]["iteration"]
    model = get_model(options)
    model.load_state_dict(best["model"])  # the real architecture takes it back
    assert all(torch.isfinite(p).all() for p in model.parameters())


def get_model(options):
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering.from_pretrained(options["model"])
