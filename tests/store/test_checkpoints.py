"""Checkpoint files: torch or pickle format, atomic writes, checksum verification, pruning."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pbtune.store.checkpoints import (
    CheckpointCorrupt,
    CheckpointStore,
    deserialize_state,
    load_state,
    serialize_state,
)


def test_torch_state_uses_torch_format_and_round_trips(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "iteration": 3}
    data = serialize_state(state)
    assert data[:2] == b"PK"  # torch.save's zip container
    back = deserialize_state(data)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["iteration"] == 3


def test_torch_free_process_writes_a_pickle(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.delitem(sys.modules, "torch")  # as in a pbt-toy driver, which never loads torch
    state = {"theta": np.array([0.1, 0.2]), "iteration": 2, "config": {"h0": 0.5}}
    data = serialize_state(state)
    assert data[:2] != b"PK"
    path = tmp_path / "best_model.pt"
    path.write_bytes(data)
    back = load_state(path)
    assert np.array_equal(back["theta"], state["theta"]) and back["config"] == {"h0": 0.5}


def test_store_verifies_checksums_and_prunes_only_its_files(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    first = store.save("t0", 2, {"x": torch.ones(3), "iteration": 2})
    second = store.save("t0", 4, {"x": torch.zeros(3), "iteration": 4})
    assert first["path"] == "checkpoints/t0/iter_000002.pt" and first["iteration"] == 2
    assert torch.equal(store.load(first)["x"], torch.ones(3))
    path = tmp_path / second["path"]
    path.write_bytes(path.read_bytes()[:-10])  # truncated after the fact
    with pytest.raises(CheckpointCorrupt, match="checksum mismatch"):
        store.load(second)
    mine = tmp_path / "checkpoints" / "user_note.txt"
    mine.write_text("not ours")
    remaining = store.prune({first["path"]}, [first["path"], second["path"]])
    assert remaining == [first["path"]] and not path.exists() and mine.exists()
    path.unlink(missing_ok=True)
    with pytest.raises(CheckpointCorrupt, match="cannot read"):
        store.load(second)
