"""GPU benchmark: memory and speed of LoRA, QLoRA and full fine-tuning on Llama-3.2-3B's shape.

Runs real cells (``harness.cell.run_cell``: the harness's loader, trainer, telemetry and
result.json) on a random-weight Llama-3.2-3B built from the shipped config
(``harness/models/configs/llama-3.2-3b.json``), so nothing is downloaded: the weights are
saved once to a local folder and loaded from there, 4-bit for QLoRA, as any local model.
The data is made here too: causal summarization rows of random words whose lengths vary
between about 384 and 768 tokens (prompt + response), so that padding-free packing has
padding to remove, as in peft's MetaMathQA benchmark (batch 4, up to 768 tokens).

Each run records peak reserved memory (torch, and NVML's device peak), tokens/s over the
training phase (non-padding tokens; compile's first step excluded), MFU, and NVML energy
per 1,000 tokens. One JSON document lists every run (``--out``); the comparison figures
(packed vs padded, compiled vs not, QLoRA vs LoRA memory, sampler on vs off) are computed
from runs made side by side in this one process.

    python scripts/gpu_bench.py --out gpu-bench.json [--steps 120] [--runs lora,lora-packed,...]
    python scripts/gpu_bench.py --rehearse --out /tmp/b.json   # CPU, tiny shape (tests)

Targets (issue "On the GPU"): LoRA peak reserved <= 20.8 GiB (peft, L40S), QLoRA <= 45 % of
LoRA's, LoRA tokens/s >= 2x peft's 4,460 (L40S) and >= torchtune's 8,210 (A100) with packing
and compile, MFU >= 35 % for LoRA packed + compiled, sampler overhead <= 1 %.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ANCHORS = {
    "peft_l40s_lora_tokens_per_s": 4460,
    "peft_l40s_lora_peak_reserved_gib": 20.8,
    "peft_l40s_full_peak_reserved_gib": 36.2,
    "torchtune_a100_lora_tokens_per_s": 8210,
    "torchtune_a100_qlora_tokens_per_s": 8035,
}


@dataclass(frozen=True)
class Run:
    name: str
    method: str
    packing: bool = False
    compile: bool = False
    telemetry: bool = True


RUNS = {
    run.name: run
    for run in (
        Run("lora", "lora"),
        Run("lora-packed", "lora", packing=True),
        Run("lora-packed-compiled", "lora", packing=True, compile=True),
        Run("lora-compiled", "lora", compile=True),
        Run("qlora", "qlora"),
        Run("qlora-packed", "qlora", packing=True),
        Run("full", "full"),
        Run("full-packed", "full", packing=True),
        # sampler overhead: the same cell as lora-packed with telemetry off, run right after it
        Run("lora-packed-no-sampler", "lora", packing=True, telemetry=False),
    )
}
DEFAULT_RUNS = (
    "lora",
    "lora-packed",
    "lora-packed-no-sampler",
    "lora-packed-compiled",
    "qlora",
    "qlora-packed",
    "full",
    "full-packed",
)
WORDS = (
    "the",
    "bill",
    "act",
    "section",
    "amends",
    "federal",
    "program",
    "state",
    "secretary",
    "shall",
    "funds",
    "grant",
    "report",
    "year",
    "public",
    "health",
    "service",
    "law",
    "title",
    "provide",
    "agency",
    "tax",
)


def make_model(folder: Path, *, rehearse: bool) -> Path:
    """A random-weight Llama-3.2-3B (or, rehearsing, a tiny Llama) saved as a local model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.models.tokenizer import SPECIAL_TOKENS, build_tiny_tokenizer

    if (folder / "config.json").is_file():
        return folder
    tokenizer = build_tiny_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in SPECIAL_TOKENS.items()}
    if rehearse:
        config = LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            tie_word_embeddings=True,
        )
    else:
        shipped = json.loads((REPO / "harness" / "models" / "configs" / "llama-3.2-3b.json").read_text())
        config = LlamaConfig(
            **{k: v for k, v in shipped.items() if k not in ("_comment", "architectures", "model_type")}
        )
    config.pad_token_id, config.eos_token_id, config.bos_token_id = ids["pad"], ids["eos"], ids["bos"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(dtype)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return folder


def make_data(folder: Path, rows: int, *, rehearse: bool) -> Path:
    """BillSum-shaped JSONL: ``text`` of 300-620 words and ``summary`` of 60-120 (about 384-768
    tokens per example with the tiny tokenizer), seeded."""
    rng = random.Random(7)
    path = folder / "bench.jsonl"
    short = 0.1 if rehearse else 1.0
    with path.open("w") as handle:
        for _ in range(rows):
            text = " ".join(rng.choices(WORDS, k=int(rng.randint(300, 620) * short)))
            summary = " ".join(rng.choices(WORDS, k=int(rng.randint(60, 120) * short)))
            handle.write(json.dumps({"text": text, "summary": summary}) + "\n")
    return path


def run_one(run: Run, model_dir: Path, data: Path, out: Path, *, steps: int, rehearse: bool) -> dict[str, Any]:
    from harness.cell import run_cell
    from harness.config import CellConfig

    method_args = (
        {"r": 32, "lora_alpha": 64, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
        if run.method in ("lora", "qlora")
        else {}
    )
    config = CellConfig(
        model=str(model_dir),
        method=run.method,
        task="billsum",
        output_dir=out / run.name,
        method_args=method_args,
        train={
            "max_steps": steps,
            "batch_size": 4,
            "learning_rate": 1e-4,
            "warmup_ratio": 0.0,
            "progress_bar": False,
            "log_every": 20,
            "packing": run.packing,
            "compile": run.compile,
            "group_by_length": False,
        },
        data={
            "source": {"files": {"train": str(data), "test": str(data)}},
            "max_train_samples": 4 * steps,
            "max_eval_samples": 1,
            "max_source_tokens": 640,
            "max_target_tokens": 128,
            "max_new_tokens": 1,
        },
        tracking={"enabled": False},
        telemetry={"enabled": run.telemetry, "backend": "host" if rehearse else "nvml", "interval_s": 0.2},
    )
    result = run_cell(config)
    eff = result.efficiency
    train = eff.phases.get("train")
    gpu_train = ((result.telemetry or {}).get("phases") or {}).get("train", {})
    tokens = (eff.train_tokens_per_s or 0.0) * (train.wall_s if train else 0.0)
    energy = gpu_train.get("energy_j")
    return {
        "run": run.name,
        "method": run.method,
        "packing": run.packing,
        "compile": run.compile,
        "telemetry": run.telemetry,
        "status": result.status,
        "error": result.error,
        "steps": eff.train_steps,
        "batch_size": 4,
        "trainable_params": eff.trainable_params,
        "total_params": eff.total_params,
        "peak_reserved_gib": (train.peak_reserved_bytes / 2**30) if train and train.peak_reserved_bytes else None,
        "peak_allocated_gib": (train.peak_allocated_bytes / 2**30) if train and train.peak_allocated_bytes else None,
        "nvml_device_peak_gib": (gpu_train.get("mem_used_peak_bytes") or 0) / 2**30 or None,
        "nvml_process_peak_gib": (gpu_train.get("proc_mem_peak_bytes") or 0) / 2**30 or None,
        "tokens_per_s": eff.train_tokens_per_s,
        "samples_per_s": eff.train_samples_per_s,
        "padding_fraction": eff.padding_fraction,
        "mfu": eff.mfu,
        "model_flops_per_token": eff.model_flops_per_token,
        "compile_s": eff.compile_s,
        "train_wall_s": train.wall_s if train else None,
        "energy_j_per_1k_tokens": (1e3 * energy / tokens) if energy and tokens else None,
        "util_mean": gpu_train.get("util_mean"),
        "power_mean_w": gpu_train.get("power_mean_w"),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def comparisons(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets' figures, from runs of this one process."""
    get = lambda name, key: (runs.get(name) or {}).get(key)  # noqa: E731
    best_lora = max(
        (r for r in runs.values() if r["method"] == "lora" and r["telemetry"] and r["tokens_per_s"]),
        key=lambda r: r["tokens_per_s"],
        default=None,
    )
    return {
        "lora_peak_reserved_gib": get("lora", "peak_reserved_gib"),
        "lora_peak_reserved_target_gib": ANCHORS["peft_l40s_lora_peak_reserved_gib"],
        "qlora_over_lora_peak_reserved": ratio(get("qlora", "peak_reserved_gib"), get("lora", "peak_reserved_gib")),
        "qlora_over_lora_target": 0.45,
        "lora_tokens_per_s_over_peft_l40s": ratio(get("lora", "tokens_per_s"), ANCHORS["peft_l40s_lora_tokens_per_s"]),
        "best_lora_run": best_lora["run"] if best_lora else None,
        "best_lora_tokens_per_s_over_torchtune_a100": ratio(
            best_lora["tokens_per_s"] if best_lora else None, ANCHORS["torchtune_a100_lora_tokens_per_s"]
        ),
        "lora_packed_compiled_mfu": get("lora-packed-compiled", "mfu"),
        "packed_over_padded_tokens_per_s": {
            m: ratio(get(f"{m}-packed", "tokens_per_s"), get(m, "tokens_per_s")) for m in ("lora", "qlora", "full")
        },
        "compiled_over_eager_tokens_per_s": ratio(
            get("lora-packed-compiled", "tokens_per_s"), get("lora-packed", "tokens_per_s")
        ),
        # step time with the sampler on / off (same cell, side by side): target <= 1.01
        "sampler_overhead": ratio(get("lora-packed-no-sampler", "tokens_per_s"), get("lora-packed", "tokens_per_s")),
        "full_peak_reserved_gib": get("full", "peak_reserved_gib"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the JSON document with every run")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--runs", default=",".join(DEFAULT_RUNS), help=f"comma-separated; of {', '.join(RUNS)}")
    parser.add_argument("--work", default=None, help="model, data and cell folders (default: a temporary folder)")
    parser.add_argument("--rehearse", action="store_true", help="CPU, tiny Llama, a few steps (tests)")
    args = parser.parse_args()
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        print(f"gpu-bench: unknown run(s) {', '.join(unknown)}; valid: {', '.join(RUNS)}", file=sys.stderr)
        return 2

    import torch

    if not torch.cuda.is_available() and not args.rehearse:
        print("gpu-bench: no CUDA device visible; run this on a GPU machine", file=sys.stderr)
        return 2
    from harness.environment import environment

    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-bench-"))
    started = time.perf_counter()
    model_dir = make_model(work / "llama-3.2-3b-random", rehearse=args.rehearse)
    data = make_data(work, 4 * args.steps + 8, rehearse=args.rehearse)
    print(f"gpu-bench: model and data ready in {time.perf_counter() - started:.0f} s ({work})", flush=True)
    runs: dict[str, dict[str, Any]] = {}

    def write() -> dict[str, Any]:  # after every run: a time limit that cuts the last one keeps the others
        document = {
            "environment": environment(),
            "steps": args.steps,
            "anchors": ANCHORS,
            "runs": list(runs.values()),
            "comparisons": comparisons(runs),
            "wall_s": time.perf_counter() - started,
        }
        Path(args.out).write_text(json.dumps(document, indent=2, default=str) + "\n")
        return document

    document = write()
    for name in names:
        t0 = time.perf_counter()
        runs[name] = run_one(RUNS[name], model_dir, data, work / "cells", steps=args.steps, rehearse=args.rehearse)
        r = runs[name]
        print(
            f"{name:<24} {r['status']:<8} {r['tokens_per_s'] or 0:>9.0f} tok/s  reserved {r['peak_reserved_gib'] or 0:6.2f} GiB  "
            f"MFU {100 * (r['mfu'] or 0):5.1f} %  padding {100 * (r['padding_fraction'] or 0):4.1f} %  "
            f"{r['energy_j_per_1k_tokens'] or 0:7.1f} J/1k tok  ({time.perf_counter() - t0:.0f} s)"
            + (f"  {r['error']}" if r["error"] else ""),
            flush=True,
        )
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        document = write()
    print(json.dumps(document["comparisons"], indent=2))
    return 0 if all(r["status"] == "success" for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
