"""Contract-test options for ``hf-qa``: a real BLOOM architecture at toy size and real formats.

Written by the test, nothing downloaded: SQuAD v1.1 JSON files with known answers, a byte-level
BPE tokenizer trained on them with the ``tokenizers`` library and saved as a transformers fast
tokenizer, and a randomly initialised ``BloomConfig`` (2 layers, hidden size 32) saved with
``save_pretrained`` — so the real loading, preprocessing, training and evaluation code runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbtune.workloads.qa_synthetic import squad_json, toy_examples, write_qa_folder

__all__ = ["squad_json", "toy_examples", "write_toy_bloom"]


def write_toy_bloom(root: Path) -> dict[str, Any]:
    """Model folder + data folder under ``root``; returns hf-qa options using them."""
    return {**write_qa_folder(root), "max_length": 48, "doc_stride": 16,
            "steps_per_iteration": 3, "epochs": 2, "eval_batch_size": 8, "threads": 1}


def _hf_options(tmp_path: Path) -> dict[str, Any]:
    return write_toy_bloom(tmp_path)


OPTIONS_FACTORIES: dict[str, Callable[[Path], dict[str, Any]]] = {"hf-qa": _hf_options}
