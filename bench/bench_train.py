"""Training benchmarks, measured side by side in one run (`make bench`).

1. Step time of the harness's Trainer against a minimal hand-written PEFT loop
   (AdamW, schedule, clipping) on the same model, data and batches. Target <= 1.05.
2. Padding fraction on emotion with and without length-grouped batching.
3. Step time with the telemetry sampler at its default interval against the sampler
   off, on the same cell. Target <= 1.01.

Runs alternate (A, B, A, B, ...) and the median of each side is compared, so drifts
in machine load hit both sides alike. Figures print as a table; nothing is asserted.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()

from harness.config import DataConfig, TrainConfig  # noqa: E402
from harness.methods import apply_method, resolve_method, resolve_method_args  # noqa: E402
from harness.models import load_model, resolve_model  # noqa: E402
from harness.tasks import Formatter, collate_train, load_split, resolve_task  # noqa: E402
from harness.train import Trainer, batch_order  # noqa: E402
from harness.train.loop import expected_padding_fraction  # noqa: E402

MODEL, METHOD, TASK = "minilm-l6", "lora", "emotion"
STEPS, BATCH, ROUNDS = 20, 16, 6


def build(seed: int = 0):
    torch.manual_seed(seed)
    spec, task, method = resolve_model(MODEL), resolve_task(TASK), resolve_method(METHOD)
    loaded = load_model(spec, "seqcls", num_labels=6, label_names=list(task.label_names))
    data = DataConfig(max_source_tokens=64)
    formatter = Formatter(task, "seqcls", loaded.tokenizer, data)
    examples = [formatter.encode(r) for r in load_split(task, data, "train", limit=STEPS * BATCH)]
    args = resolve_method_args(method, spec.family, {})
    model = apply_method(
        loaded.model, method, "seqcls", args, total_steps=STEPS, gradient_checkpointing=False, quantized=False
    )
    return model, examples, formatter.pad, method


def train_config() -> TrainConfig:
    return TrainConfig(
        max_steps=STEPS, batch_size=BATCH, group_by_length=False, progress_bar=False, log_every=0, learning_rate=1e-3
    )


def time_harness(sampler: bool = False) -> float:
    import accelerate

    from harness.telemetry import TelemetrySampler

    model, examples, pad, method = build()
    accelerate.state.AcceleratorState._reset_state(reset_partial_state=True)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            model,
            examples,
            head="seqcls",
            pad_id=pad,
            config=train_config(),
            method=method,
            learning_rate=1e-3,
            seed=0,
            checkpoint_dir=Path(tmp) / "ckpt",
            accelerator=accelerate.Accelerator(cpu=True),
        )
        telemetry = TelemetrySampler(Path(tmp), interval_s=0.2, backend="auto", plot=False) if sampler else None
        if telemetry:
            telemetry.start()
            telemetry.set_phase("train")
        outcome = trainer.train()
        if telemetry:
            telemetry.stop()
    return outcome.train_seconds / outcome.steps


def time_minimal() -> float:
    """The loop a researcher would write by hand around the same PEFT model."""
    from transformers import get_scheduler

    model, examples, pad, _ = build()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=1, num_training_steps=STEPS)
    batches = batch_order([e.length for e in examples], BATCH, 0, 0, False)[:STEPS]
    start = time.perf_counter()
    for indices in batches:
        batch = collate_train([examples[i] for i in indices], "seqcls", pad)
        batch.pop("class_ids", None)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(batches)


def alternate(first, second) -> tuple[float, float]:
    """ABBA order, so neither side always runs first in a round (caches, allocator, clocks)."""
    a, b = [], []
    for round_index in range(ROUNDS):
        if round_index % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return statistics.median(a), statistics.median(b)


def main() -> int:
    print(
        f"bench_train: {MODEL} + {METHOD} on {TASK}, batch {BATCH}, {STEPS} steps x {ROUNDS} alternating rounds, "
        f"{torch.get_num_threads()} torch threads"
    )
    time_minimal()  # warm caches (tokenizer, model files, kernels) before timing either side
    harness_s, minimal_s = alternate(time_harness, time_minimal)
    print(
        f"  step time  harness {harness_s * 1e3:8.1f} ms   minimal loop {minimal_s * 1e3:8.1f} ms   "
        f"ratio {harness_s / minimal_s:.3f}  (target <= 1.05)"
    )

    task = resolve_task(TASK)
    rows = load_split(task, DataConfig(), "train", limit=None)
    tokenizer = load_model(resolve_model(MODEL), "seqcls", num_labels=6).tokenizer
    formatter = Formatter(task, "seqcls", tokenizer, DataConfig(max_source_tokens=128))
    examples = [formatter.encode(r) for r in rows]
    config = TrainConfig(batch_size=BATCH)
    plain = expected_padding_fraction(examples, config, seed=0, group_by_length=False)
    grouped = expected_padding_fraction(examples, config, seed=0, group_by_length=True)
    print(
        f"  padding    emotion train ({len(examples)} examples, batch {BATCH}): random batches {plain:.1%}, "
        f"length-grouped {grouped:.1%}  (ratio {grouped / plain:.3f})"
    )

    on_s, off_s = alternate(lambda: time_harness(sampler=True), time_harness)
    print(
        f"  telemetry  sampler on (0.2 s) {on_s * 1e3:8.1f} ms   off {off_s * 1e3:8.1f} ms   "
        f"ratio {on_s / off_s:.3f}  (target <= 1.01)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
