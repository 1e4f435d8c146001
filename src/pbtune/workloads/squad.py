"""SQuAD v1.1 for extractive QA: reading, the standard preprocessing, and the official metrics.

Why its own module: the ``hf-qa`` workload's data path is the part everyone gets subtly wrong —
questions and contexts tokenised as pairs with the context truncated in overlapping windows
(``max_length``, ``doc_stride``), answer character spans mapped to token positions through the
offset mapping (a window without the whole answer points at token 0), and predictions mapped back
to text through the same offsets. Exact match and F1 use SQuAD's official answer normalisation
(lower case, no punctuation, no articles, single spaces), as the official ``evaluate-v1.1.py``.
"""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path
from typing import Any

import numpy as np

from pbtune.errors import UserError

FILES = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}


def read_squad(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The examples of a SQuAD v1.1 JSON file: ``id, question, context, answers`` (texts and
    character starts), in file order, the first ``limit`` of them."""
    if not path.is_file():
        raise UserError(f"SQuAD file {path} not found: place the official {path.name} there "
                        f"(https://rajpurkar.github.io/SQuAD-explorer/), or set options.data_dir")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        examples = [
            {"id": str(qa["id"]), "question": qa["question"], "context": paragraph["context"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [int(a["answer_start"]) for a in qa["answers"]]}}
            for article in data for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a SQuAD v1.1 JSON file ({type(exc).__name__}: {exc})") \
            from None
    if not examples:
        raise UserError(f"{path} holds no questions")
    return examples[:limit] if limit else examples


def features(tokenizer: Any, examples: list[dict[str, Any]], max_length: int,
             doc_stride: int) -> dict[str, np.ndarray]:
    """Tokenised windows with answer token positions (0, 0 when the window lacks the answer).

    Returns int arrays ``input_ids``, ``attention_mask`` (N, max_length), ``start_positions``,
    ``end_positions``, ``example_index`` (N,) and ``offsets`` (N, max_length, 2) with -1 outside
    the context (what post-processing may point at).
    """
    enc = tokenizer([e["question"].lstrip() for e in examples], [e["context"] for e in examples],
                    truncation="only_second", max_length=max_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    starts, ends, offsets = [], [], []
    for i, mapping in enumerate(enc["offset_mapping"]):
        sequence = enc.sequence_ids(i)
        example = examples[enc["overflow_to_sample_mapping"][i]]
        context = [k for k, s in enumerate(sequence) if s == 1]
        offsets.append([list(o) if sequence[k] == 1 else [-1, -1] for k, o in enumerate(mapping)])
        first = example["answers"]["answer_start"][0]
        last = first + len(example["answers"]["text"][0])
        if not context or mapping[context[0]][0] > first or mapping[context[-1]][1] < last:
            starts.append(0)
            ends.append(0)
            continue
        starts.append(next(k for k in context if mapping[k][1] > first))
        ends.append(next(k for k in reversed(context) if mapping[k][0] < last))
    return {"input_ids": np.asarray(enc["input_ids"], dtype=np.int64),
            "attention_mask": np.asarray(enc["attention_mask"], dtype=np.int64),
            "start_positions": np.asarray(starts, dtype=np.int64),
            "end_positions": np.asarray(ends, dtype=np.int64),
            "example_index": np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64),
            "offsets": np.asarray(offsets, dtype=np.int64)}


def predictions(start_logits: np.ndarray, end_logits: np.ndarray, feats: dict[str, np.ndarray],
                examples: list[dict[str, Any]], n_best: int = 20,
                max_answer_length: int = 30) -> list[str]:
    """The best-scoring context span of each example over its windows, as text."""
    best: dict[int, tuple[float, str]] = {}
    for i, example_index in enumerate(feats["example_index"]):
        offsets = feats["offsets"][i]
        context = examples[int(example_index)]["context"]
        for s in np.argsort(start_logits[i])[::-1][:n_best]:
            for e in np.argsort(end_logits[i])[::-1][:n_best]:
                if offsets[s][0] < 0 or offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start_logits[i][s] + end_logits[i][e])
                if int(example_index) not in best or score > best[int(example_index)][0]:
                    best[int(example_index)] = (score, context[offsets[s][0]:offsets[e][1]])
    return [best.get(k, (0.0, ""))[1] for k in range(len(examples))]


def normalize_answer(text: str) -> str:
    """SQuAD's official normalisation: lower case, no punctuation, no articles, one space."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predicted: list[str], examples: list[dict[str, Any]]) -> dict[str, float]:
    """``exact_match`` and ``f1`` in percent, each the best over an example's gold answers."""
    em = f1 = 0.0
    for text, example in zip(predicted, examples, strict=True):
        golds = example["answers"]["text"]
        em += max(float(normalize_answer(text) == normalize_answer(g)) for g in golds)
        f1 += max(f1_score(text, g) for g in golds)
    return {"exact_match": 100.0 * em / len(examples), "f1": 100.0 * f1 / len(examples)}
