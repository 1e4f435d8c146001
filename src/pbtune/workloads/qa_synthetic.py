"""A SQuAD v1.1 folder, a tokenizer and a randomly initialised BLOOM, written offline.

Why: ``hf-qa`` reads a model folder and the official SQuAD JSON files; neither can be downloaded
on an offline machine or a GPU node without internet. Writing them in the real formats — SQuAD
JSON with known answers, a byte-level BPE tokenizer trained with the ``tokenizers`` library and
saved as a transformers fast tokenizer, a ``BloomConfig`` model saved with ``save_pretrained`` —
lets the real loading, preprocessing, training and evaluation code run on them: the tests at toy
size, ``bench/gpu_bloom.py`` at BLOOM-560M's shape (random weights train at the same speed).
"""

from __future__ import annotations

import json
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


def toy_examples(n: int = 16) -> list[tuple[str, str, str]]:
    """``n`` questions "What is the capital of X?" over contexts of 1-3 filler sentences."""
    out = []
    for i in range(n):
        land, city = f"{LANDS[i % 16]}{i // 16 or ''}", CITIES[i % 16]
        filler = " ".join(["The river is long and the hills are green."] * (1 + i % 3))
        context = f"{filler} The capital of {land} is {city}. {land} has many farms."
        out.append((f"What is the capital of {land}?", context, city))
    return out


def write_qa_folder(root: Path, *, examples: int = 16, train: int = 12, hidden: int = 32,
                    layers: int = 2, heads: int = 4, vocab: int = 400) -> dict[str, Any]:
    """Model folder + SQuAD folder under ``root``; returns the ``hf-qa`` options using them.

    The first ``train`` examples are the training file, the rest the validation file.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BloomConfig, BloomForQuestionAnswering, PreTrainedTokenizerFast

    rows = toy_examples(examples)
    data = Path(root) / "squad"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train-v1.1.json").write_text(json.dumps(squad_json(rows[:train])))
    (data / "dev-v1.1.json").write_text(json.dumps(squad_json(rows[train:])))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([t for q, c, _ in rows for t in (q, c)], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model_dir = Path(root) / "bloom"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(model_dir)
    config = BloomConfig(vocab_size=len(fast), hidden_size=hidden, n_layer=layers, n_head=heads,
                         pad_token_id=fast.pad_token_id)
    BloomForQuestionAnswering(config).save_pretrained(model_dir)
    return {"model": str(model_dir), "local_files_only": True, "data_dir": str(data)}
