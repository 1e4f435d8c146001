"""Contract-test options for ``hf-qa``: a real BLOOM architecture at toy size and real formats.

Written by the test, nothing downloaded: SQuAD v1.1 JSON files with known answers, a byte-level
BPE tokenizer trained on them with the ``tokenizers`` library and saved as a transformers fast
tokenizer, and a randomly initialised ``BloomConfig`` (2 layers, hidden size 32) saved with
``save_pretrained`` — so the real loading, preprocessing, training and evaluation code runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

CITIES = ["Avalon", "Brindle", "Corvo", "Dunmore", "Elsinore", "Fenwick", "Galway", "Harrow",
          "Ilford", "Jarrow", "Kelso", "Lowick", "Marlow", "Norwich", "Oxley", "Penrith"]
LANDS = ["Aria", "Bexland", "Carth", "Dovia", "Estra", "Fallow", "Gorm", "Hesper", "Istria",
         "Jorvik", "Kestrel", "Lumen", "Mirth", "Norland", "Ostia", "Pellor"]


def squad_json(examples: list[tuple[str, str, str]]) -> dict[str, Any]:
    """SQuAD v1.1 layout from (question, context, answer) triples (answer found in context)."""
    paragraphs = [{"context": c, "qas": [{"id": f"q{i}", "question": q, "answers": [
        {"text": a, "answer_start": c.index(a)}]}]} for i, (q, c, a) in enumerate(examples)]
    return {"version": "1.1", "data": [{"title": "toy", "paragraphs": paragraphs}]}


def toy_examples() -> list[tuple[str, str, str]]:
    out = []
    for i, (land, city) in enumerate(zip(LANDS, CITIES, strict=True)):
        filler = " ".join(["The river is long and the hills are green."] * (1 + i % 3))
        context = f"{filler} The capital of {land} is {city}. {land} has many farms."
        out.append((f"What is the capital of {land}?", context, city))
    return out


def write_toy_bloom(root: Path) -> dict[str, Any]:
    """Model folder + data folder under ``root``; returns hf-qa options using them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BloomConfig, BloomForQuestionAnswering, PreTrainedTokenizerFast

    examples = toy_examples()
    data = root / "squad"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train-v1.1.json").write_text(json.dumps(squad_json(examples[:12])))
    (data / "dev-v1.1.json").write_text(json.dumps(squad_json(examples[12:])))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [t for q, c, _ in examples for t in (q, c)]
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model_dir = root / "tiny-bloom"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(model_dir)
    config = BloomConfig(vocab_size=len(fast), hidden_size=32, n_layer=2, n_head=4,
                         pad_token_id=fast.pad_token_id)
    BloomForQuestionAnswering(config).save_pretrained(model_dir)
    return {"model": str(model_dir), "local_files_only": True, "data_dir": str(data),
            "max_length": 48, "doc_stride": 16, "steps_per_iteration": 3, "epochs": 2,
            "eval_batch_size": 8, "threads": 1}


def _hf_options(tmp_path: Path) -> dict[str, Any]:
    return write_toy_bloom(tmp_path)


OPTIONS_FACTORIES: dict[str, Callable[[Path], dict[str, Any]]] = {"hf-qa": _hf_options}
