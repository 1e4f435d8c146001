"""BLOOM-560M on a GPU: optimizer-step time per precision, then one 4-trial PBT iteration.

Why: issue 19 asks for the transformer fine-tune's real cost on a GPU — a training step of
BLOOM-560M with AdamW in fp16 (autocast + GradScaler) and bf16, and a PBT iteration of 4 trials
of ``hf-qa`` sharing the GPU (exploit of multi-GB states included). Nothing is downloaded (GPU
nodes are often offline): the model is BLOOM-560M's architecture (``BloomConfig``: 24 layers,
hidden 1024, 16 heads) with random weights, which trains at the same speed as the real ones; the
SQuAD files and the tokenizer are written by :mod:`pbtune.workloads.qa_synthetic`. Pass
``--model`` (a local folder) and ``--data-dir`` to use real weights and data instead.

    .venv/bin/python bench/gpu_bloom.py                       # on a GPU machine: both parts
    .venv/bin/python bench/gpu_bloom.py --tiny --device cpu   # the same code at toy size
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

BLOOM_560M = {"hidden": 1024, "layers": 24, "heads": 16}
TINY = {"hidden": 32, "layers": 2, "heads": 4}


def step_times(model_dir: str, device: str, precision: str, batch: int, seq: int,
               steps: int) -> dict[str, Any]:
    """ms per optimizer step (forward, backward, AdamW) after 3 warm-up steps; peak memory."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16" and device == "cuda")
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq), device=device)
    pos = torch.randint(0, seq, (batch,), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(input_ids=ids, start_positions=pos, end_positions=pos).loss
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"precision": precision, "batch": batch, "seq": seq, "params_m": params / 1e6,
            "ms_per_step": 1000 * sorted(times)[len(times) // 2], "peak_gib": peak}


def pbt_iteration(options: dict[str, Any], device: str, precision: str, root: Path,
                  steps: int) -> dict[str, Any]:
    """One 4-trial PBT run of hf-qa, two iterations with an exploit between (held states)."""
    import pbtune

    gpu = device == "cuda"
    result = pbtune.run(workload="hf-qa", results_dir=root, progress=False, plots=False,
                        overrides={
        "population": 4, "stop.max_iterations": 2, "stop.metric_threshold": None,
        "pbt.perturbation_interval": 1, "pbt.quantile_fraction": 0.25,
        "checkpoint_interval": 2, "resources.gpus_per_trial": 0.25 if gpu else 0,
        "resources.cpu_workers": "none" if gpu else "auto",
        "resources.precision.gpu": precision,
        "options": {**options, "steps_per_iteration": steps}})
    s = result.summary
    return {"precision": precision, "wall_s": s["wall_s"], "compute_s": s["compute_s"],
            "efficiency": s["efficiency"], "exploits": s["exploits"],
            "best_eval_loss": s["best"]["metric"], "slots": s["slots"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy BLOOM (CPU check of the code)")
    parser.add_argument("--model", default=None, help="a local model folder (default: random "
                                                      "BLOOM-560M written to a temp folder)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--precisions", default="fp16,bf16")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=384)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pbt-steps", type=int, default=50, help="optimizer steps per PBT "
                                                                 "iteration")
    parser.add_argument("--skip-pbt", action="store_true")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; run on a GPU machine, or pass "
                         "--tiny --device cpu to check the code")
    with tempfile.TemporaryDirectory(prefix="pbtune-bloom-") as tmp:
        from pbtune.workloads.qa_synthetic import write_qa_folder

        shape = TINY if args.tiny else BLOOM_560M
        options = write_qa_folder(Path(tmp) / "qa", examples=64, train=48,
                                  vocab=400 if args.tiny else 8000, **shape)
        if args.model:
            options["model"] = args.model
        if args.data_dir:
            options["data_dir"] = args.data_dir
        seq = 48 if args.tiny else args.seq
        options.update(max_length=seq, doc_stride=seq // 4)
        precisions = [p for p in args.precisions.split(",") if p]
        if args.device == "cpu":
            precisions = ["fp32"]
        steps = [step_times(options["model"], args.device, p, args.batch, seq, args.steps)
                 for p in precisions]
        pbt = [] if args.skip_pbt else [
            pbt_iteration(options, args.device, p, Path(tmp) / f"runs-{p}", args.pbt_steps)
            for p in precisions]
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"\nBLOOM {'toy' if args.tiny else '560M architecture'} on {name}, "
          f"AdamW, batch {args.batch}")
    print(f"{'precision':<10} {'params M':>9} {'seq':>5} {'ms/step':>9} {'peak GiB':>9}")
    for r in steps:
        print(f"{r['precision']:<10} {r['params_m']:>9.0f} {r['seq']:>5} {r['ms_per_step']:>9.1f} "
              f"{r['peak_gib']:>9.2f}")
    if pbt:
        print(f"\n4-trial PBT (2 iterations of {args.pbt_steps} steps, an exploit between), "
              "states held on their workers")
        print(f"{'precision':<10} {'slots':>6} {'wall s':>8} {'compute s':>10} {'efficiency':>11} "
              f"{'exploits':>9} {'best eval_loss':>15}")
        for r in pbt:
            print(f"{r['precision']:<10} {r['slots']:>6} {r['wall_s']:>8.1f} "
                  f"{r['compute_s']:>10.1f} {r['efficiency']:>11.2f} {r['exploits']:>9} "
                  f"{r['best_eval_loss']:>15.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"steps": steps, "pbt": pbt}, indent=1))


if __name__ == "__main__":
    main()
