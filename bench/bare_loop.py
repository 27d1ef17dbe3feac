"""A minimal hand-written LoRA fine-tuning loop: the reference the harness must not train worse than.

peft + transformers + torch only, none of the harness: sequence classification on emotion
(JSONL files with ``text`` and ``label``), LoRA on the attention's query/value (or IA3: ``--method``), AdamW,
random batches, a constant or linear-warmup schedule, optional clipping, then accuracy and
macro-F1 on the test file.

    python bench/bare_loop.py MODEL_DIR TRAIN.jsonl TEST.jsonl --seed 0 [--steps 300] [--lr 2e-3]

Prints one JSON line: {"seed", "accuracy", "f1_macro", "seconds", "train_seconds", "samples_per_s"}.
``train_and_score`` is the same in-process (bench/gate.py measures the harness against it).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import torch
from peft import IA3Config, LoraConfig, get_peft_model
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def read(path: str) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def adapter_config(method: str, rank: int) -> Any:
    """The peft config the bare loop trains: LoRA on query/value, or IA3 on key/value and the
    feed-forward output (peft's BERT defaults, as the harness builds it)."""
    if method == "ia3":
        return IA3Config(
            task_type="SEQ_CLS", target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"]
        )
    return LoraConfig(task_type="SEQ_CLS", r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=["query", "value"])


def train_and_score(
    model_dir: str,
    train: list[dict],
    test: list[dict],
    *,
    seed: int = 0,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    max_length: int = 128,
    rank: int = 8,
    clip: float = 0.0,
    warmup_steps: int = 0,
    method: str = "lora",
) -> dict[str, float]:
    """Train and score; ``test`` empty: train only (a throughput measurement). ``seconds``: training
    and scoring; ``train_seconds``: the training loop alone, as the harness's samples/s counts it."""
    torch.manual_seed(seed)
    random.seed(seed)
    labels = sorted({int(r["label"]) for r in train})
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))
    model = get_peft_model(model, adapter_config(method, rank))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup_steps + 1)))

    def batch(rows: list[dict]) -> dict:
        encoded = tokenizer(
            [r["text"] for r in rows], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        encoded["labels"] = torch.tensor([int(r["label"]) for r in rows])
        return encoded

    started = time.perf_counter()
    model.train()
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:  # a fresh shuffled epoch
            order = list(range(len(train)))
            random.shuffle(order)
        indices, order = order[:batch_size], order[batch_size:]
        loss = model(**batch([train[i] for i in indices])).loss
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    train_seconds = time.perf_counter() - started

    model.eval()
    predictions: list[int] = []
    with torch.no_grad():
        for start in range(0, len(test), 64):
            predictions += (
                model(**{k: v for k, v in batch(test[start : start + 64]).items() if k != "labels"})
                .logits.argmax(-1)
                .tolist()
            )
    references = [int(r["label"]) for r in test]
    scores = (
        {
            "accuracy": accuracy_score(references, predictions),
            "f1_macro": f1_score(references, predictions, average="macro"),
        }
        if test
        else {}
    )
    return {
        "seed": seed,
        **scores,
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
        "samples_per_s": steps * batch_size / train_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("train")
    parser.add_argument("test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--clip", type=float, default=0.0, help="max grad norm; 0: no clipping")
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--method", choices=["lora", "ia3"], default="lora")
    args = parser.parse_args()
    result = train_and_score(
        args.model,
        read(args.train),
        read(args.test),
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        max_length=args.max_length,
        rank=args.rank,
        clip=args.clip,
        warmup_steps=args.warmup_steps,
        method=args.method,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
