"""A minimal hand-written LoRA fine-tuning loop: the reference the harness must not train worse than.

peft + transformers + torch only, none of the harness: sequence classification on emotion
(JSONL files with ``text`` and ``label``), LoRA on the attention's query/value, AdamW,
random batches, a constant or linear-warmup schedule, optional clipping, then accuracy and
macro-F1 on the test file.

    python bench/bare_loop.py MODEL_DIR TRAIN.jsonl TEST.jsonl --seed 0 [--steps 300] [--lr 2e-3]

Prints one JSON line: {"seed", "accuracy", "f1_macro", "seconds"}.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch
from peft import LoraConfig, get_peft_model
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def read(path: str) -> list[dict]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


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
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    train, test = read(args.train), read(args.test)
    labels = sorted({int(r["label"]) for r in train})
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=len(labels))
    model = get_peft_model(
        model,
        LoraConfig(
            task_type="SEQ_CLS", r=args.rank, lora_alpha=args.rank, lora_dropout=0.0, target_modules=["query", "value"]
        ),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (args.warmup_steps + 1)))

    def batch(rows: list[dict]) -> dict:
        encoded = tokenizer(
            [r["text"] for r in rows], truncation=True, max_length=args.max_length, padding=True, return_tensors="pt"
        )
        encoded["labels"] = torch.tensor([int(r["label"]) for r in rows])
        return encoded

    started = time.perf_counter()
    model.train()
    order: list[int] = []
    for _ in range(args.steps):
        if len(order) < args.batch_size:  # a fresh shuffled epoch
            order = list(range(len(train)))
            random.shuffle(order)
        indices, order = order[: args.batch_size], order[args.batch_size :]
        loss = model(**batch([train[i] for i in indices])).loss
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()

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
    print(
        json.dumps(
            {
                "seed": args.seed,
                "accuracy": accuracy_score(references, predictions),
                "f1_macro": f1_score(references, predictions, average="macro"),
                "seconds": time.perf_counter() - started,
            }
        )
    )


if __name__ == "__main__":
    main()
