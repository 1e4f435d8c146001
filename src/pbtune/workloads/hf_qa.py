"""``hf-qa``: PBT of a Hugging Face extractive-QA fine-tune (default BLOOM-560M on SQuAD v1.1).

Why: one of the original systems fine-tunes BLOOM-560M on 1,000 SQuAD questions with PBT
(``eval_loss``, perturbation every iteration; lr, per-device batch size and weight decay
explored; fp16). Here it is a :class:`TorchWorkload`: any ``AutoModelForQuestionAnswering``
checkpoint by hub name or local folder, SQuAD's official JSON files in ``data_dir``, the standard
windowed preprocessing and the official EM/F1 (:mod:`pbtune.workloads.squad`). One iteration is
``steps_per_iteration`` optimiser steps, then evaluation. The linear warm-up/decay schedule is a
``LambdaLR`` whose step count travels with the trial (exploit copies it), and a new ``lr`` becomes
the schedule's base (:mod:`pbtune.workloads.hyperparams`); ``warmup_ratio`` is read by the
schedule itself, so exploring it takes effect at the next step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from pbtune.errors import UserError
from pbtune.workloads import squad
from pbtune.workloads.registry import register
from pbtune.workloads.torch_workload import TorchWorkload

_FIELDS = ("input_ids", "attention_mask", "start_positions", "end_positions")
_LR = {"loguniform": [5e-6, 2e-4]}


class LinearWarmup:
    """``LambdaLR`` factor: linear warm-up over ``ratio × total`` steps, then linear decay to 0.

    A callable object (not a lambda) so ``LambdaLR.state_dict`` saves it; the workload sets
    ``ratio`` when ``warmup_ratio`` is explored."""

    def __init__(self, total: int, ratio: float) -> None:
        self.total, self.ratio = int(total), float(ratio)

    def __call__(self, step: int) -> float:
        warm = self.ratio * self.total
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (self.total - step) / max(1.0, self.total - warm))


@register()
class HFQuestionAnswering(TorchWorkload):
    """Extractive QA fine-tune; metric ``eval_loss`` (min), also ``exact_match`` and ``f1``."""

    name: ClassVar[str] = "hf-qa"
    metrics: ClassVar[Mapping[str, str]] = {"eval_loss": "min", "exact_match": "max", "f1": "max"}
    default_metric: ClassVar[str] = "eval_loss"
    large_state: ClassVar[bool | None] = True  # 560M parameters + AdamW: ~6.7 GB per trial
    hyperparameters: ClassVar[tuple[str, ...]] = ("lr", "per_device_bs", "weight_decay",
                                                  "warmup_ratio")
    default_config: ClassVar[Mapping[str, Any]] = {
        "lr": 5e-5, "per_device_bs": 2, "weight_decay": 0.0, "warmup_ratio": 0.0}
    default_param_space: ClassVar[Mapping[str, Any]] = {
        "lr": _LR, "per_device_bs": [1, 2], "weight_decay": [0.0, 0.01], "warmup_ratio": 0.0}
    default_mutations: ClassVar[Mapping[str, Any]] = {
        "lr": _LR, "per_device_bs": [1, 2], "weight_decay": [0.0, 0.01]}
    train_arrays: ClassVar[tuple[str, ...]] = tuple(f"train_{k}" for k in _FIELDS)
    eval_arrays: ClassVar[tuple[str, ...]] = tuple(f"eval_{k}" for k in _FIELDS)
    default_options: ClassVar[Mapping[str, Any]] = {
        "model": "bigscience/bloom-560m",  # hub name or a local folder (save_pretrained)
        "local_files_only": False,  # True: never contact the hub (the folder or cache only)
        "data_dir": "./data",  # holds train_file and eval_file (SQuAD v1.1 JSON)
        "train_file": squad.FILES["train"], "eval_file": squad.FILES["validation"],
        "train_samples": 1000, "eval_samples": 100,  # questions, as the original
        "max_length": 384, "doc_stride": 128,  # tokens per window, overlap between windows
        "steps_per_iteration": 50,  # optimiser steps per iteration (then evaluation)
        "epochs": 5,  # the schedule's length: epochs × train windows / 2 steps
        "eval_batch_size": 8,
    }

    @classmethod
    def load_data(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Tokenise the SQuAD subsets once (on the driver): int64 windows and answer positions;
        the evaluation examples travel as JSON for EM/F1."""
        opts = cls.resolve_options(options)
        data_dir = Path(opts["data_dir"]).expanduser()
        train = squad.read_squad(data_dir / opts["train_file"], int(opts["train_samples"]))
        evaluation = squad.read_squad(data_dir / opts["eval_file"], int(opts["eval_samples"]))
        tokenizer = _tokenizer(opts)
        out: dict[str, Any] = {}
        for split, examples in (("train", train), ("eval", evaluation)):
            feats = squad.features(tokenizer, examples, int(opts["max_length"]),
                                   int(opts["doc_stride"]))
            out.update({f"{split}_{k}": v for k, v in feats.items()})
        out["eval_examples"] = np.array(json.dumps(evaluation))
        return out

    def __init__(self, config: Mapping[str, Any], *, data: Any = None,
                 options: Mapping[str, Any] | None = None, seed: int = 0, device: str = "cpu",
                 precision: str = "fp32") -> None:
        if data is None:
            data = self.load_data(options or {})
        self._n_train = int(np.shape(data["train_input_ids"])[0])
        super().__init__(config, data=data, options=options, seed=seed, device=device,
                         precision=precision)
        self.examples = json.loads(str(np.asarray(data["eval_examples"])))
        self.eval_feats = {k: np.asarray(data[f"eval_{k}"]) for k in ("example_index", "offsets")}

    def build_model(self, options: Mapping[str, Any]) -> torch.nn.Module:
        auto = _transformers().AutoModelForQuestionAnswering
        try:
            return auto.from_pretrained(
                options["model"], local_files_only=bool(options["local_files_only"]))
        except OSError as exc:
            raise UserError(f"hf-qa: cannot load model {options['model']!r} "
                            f"({str(exc).splitlines()[0]}); pass a local folder saved with "
                            "save_pretrained as options.model") from None

    def build_optimizer(self, model: torch.nn.Module, config: Mapping[str, Any]) -> Any:
        return torch.optim.AdamW(model.parameters(), lr=float(config["lr"]))

    def build_scheduler(self, optimizer: Any, options: Mapping[str, Any]) -> Any:
        # Optimiser steps at the largest per-device batch (2), each of world_size batches.
        total = int(options["epochs"]) * math.ceil(self._n_train / (2 * self.world_size))
        self.warmup = LinearWarmup(total, float(self.config["warmup_ratio"]))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, self.warmup)

    def on_hyperparameters(self, changed: Mapping[str, Any]) -> None:
        if "per_device_bs" in changed:
            size = changed["per_device_bs"]
            if isinstance(size, bool) or int(size) != size or int(size) < 1:
                raise ValueError(f"hf-qa: per_device_bs must be an integer >= 1, got {size}")
            self.batch_size = int(size)
            self.config["per_device_bs"] = int(size)
        if "warmup_ratio" in changed:
            self.warmup.ratio = float(changed["warmup_ratio"])

    def train_step(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        ids, mask, start, end = batch
        return self.model(input_ids=ids, attention_mask=mask, start_positions=start,
                          end_positions=end).loss

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """``eval_loss`` over every evaluation window, then EM/F1 of the best spans."""
        self.model.eval()
        step, n = int(self.options["eval_batch_size"]), self.eval_data[0].shape[0]
        loss_sum, starts, ends = 0.0, [], []
        for i in range(0, n, step):
            ids, mask, start, end = (t[i:i + step] for t in self.eval_data)
            with self.autocast():
                out = self.model(input_ids=ids, attention_mask=mask, start_positions=start,
                                 end_positions=end)
            loss_sum += float(out.loss) * ids.shape[0]
            starts.append(out.start_logits.float().cpu().numpy())
            ends.append(out.end_logits.float().cpu().numpy())
        predicted = squad.predictions(np.concatenate(starts), np.concatenate(ends),
                                      self.eval_feats, self.examples)
        return {"eval_loss": loss_sum / n, **squad.squad_metrics(predicted, self.examples)}


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise UserError("hf-qa needs Hugging Face transformers: pip install 'pbtune[hf]' "
                        "(transformers, tokenizers)") from None
    transformers.utils.logging.disable_progress_bar()  # one bar per trial built: noise
    return transformers


def _tokenizer(opts: Mapping[str, Any]) -> Any:
    try:
        tokenizer = _transformers().AutoTokenizer.from_pretrained(
            opts["model"], local_files_only=bool(opts["local_files_only"]))
    except OSError as exc:
        raise UserError(f"hf-qa: cannot load the tokenizer of {opts['model']!r} "
                        f"({str(exc).splitlines()[0]}); pass a local folder as options.model"
                        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"hf-qa: {opts['model']!r} has no fast tokenizer; QA preprocessing "
                        "needs offset mappings")
    tokenizer.padding_side = "right"  # BLOOM's default is left; answers index from the left
    return tokenizer
