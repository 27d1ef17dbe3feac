"""Evaluate a model on a task split: batched prediction or generation, then metrics.

Generation runs in batches of similar length (sorted) to waste little compute on
padding; decoder-only prompts are left-padded so generation continues each prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.config import DataConfig
from harness.heads import HEADS
from harness.tasks.formatting import Example, Formatter, pad_batch
from harness.tasks.kinds import SCORINGS
from harness.tasks.registry import TaskSpec

# predictions.jsonl's "input": the example's input text, cut to this many characters (enough to
# recognise the example; "row" finds all of it in the data)
INPUT_CHARS = 500


@dataclass
class Evaluation:
    metrics: dict[str, float]
    reports: dict[str, Any]
    predictions: list[dict[str, Any]]
    generated_tokens: int


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    formatter: Formatter,
    examples: list[Example],
    *,
    data: DataConfig,
    batch_size: int,
    device: torch.device,
) -> Evaluation:
    task: TaskSpec = formatter.task
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt_ids or examples[i].input_ids))
    outputs: dict[int, Any] = {}
    generated = 0
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = [examples[i] for i in indices]
        head = HEADS[formatter.head]
        if head.class_labels:
            ids, mask = pad_batch([e.input_ids for e in batch], formatter.pad)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for i, pred in zip(indices, logits.argmax(-1).tolist()):
                outputs[i] = pred
            continue
        left = head.prompt_padding == "left"
        prompts = [e.prompt_ids if left else e.input_ids for e in batch]
        ids, mask = pad_batch(prompts, formatter.pad, left=left)  # type: ignore[arg-type]
        max_new = data.max_new_tokens or data.max_target_tokens
        sequences = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new,
            num_beams=data.num_beams,
            do_sample=False,
            pad_token_id=formatter.pad,
            eos_token_id=formatter.stop,
        )
        if left:  # decoder-only output repeats the prompt
            sequences = sequences[:, ids.shape[1] :]
        for i, seq in zip(indices, sequences.tolist()):
            seq = [t for t in seq if t not in (formatter.pad, *formatter.stop)]
            generated += len(seq)
            outputs[i] = formatter.tokenizer.decode(seq, skip_special_tokens=True).strip()
    return _score(task, formatter, examples, outputs, generated)


def _score(
    task: TaskSpec, formatter: Formatter, examples: list[Example], outputs: dict[int, Any], generated: int
) -> Evaluation:
    predictions: list[dict[str, Any]] = []
    score = SCORINGS[task.scoring].score
    if not task.labelled:  # the answers are texts
        texts = [outputs[i] for i in range(len(examples))]
        targets = [str(e.reference) for e in examples]
        metrics, reports = score(texts, targets, [], task.answer)
        predictions = [
            {"index": i, **_source(examples[i]), "prediction": t, "reference": r, **_extracted(task, t, r)}
            for i, (t, r) in enumerate(zip(texts, targets))
        ]
        return Evaluation(metrics, reports, predictions, generated)
    labels = list(task.label_names)
    predicted: list[int] = []
    for i in range(len(examples)):
        value = outputs[i]
        pred = formatter.decode_label(value) if isinstance(value, str) else int(value)
        predicted.append(pred)
        record = {
            "index": i,
            **_source(examples[i]),
            "prediction": labels[pred] if pred >= 0 else None,
            "reference": labels[int(examples[i].reference)],
        }
        if isinstance(value, str):
            record["generated"] = value
        predictions.append(record)
    references = [int(e.reference) for e in examples]
    metrics, reports = score(predicted, references, labels, task.answer)
    return Evaluation(metrics, reports, predictions, generated)


def _source(example: Example) -> dict[str, Any]:
    """A prediction's way back to the data: ``index`` is its place in the evaluated sample,
    ``row`` the source row's index in its split as read, ``input`` the start of its text."""
    return {"row": example.source_row, "input": example.text[:INPUT_CHARS]}


def _extracted(task: TaskSpec, generated: str, reference: str) -> dict[str, Any]:
    """The answers the task's extractor read out of the generation and the reference, beside
    the raw texts (None: it found none, which scores wrong); nothing for a task without one."""
    if task.answer is None:
        return {}
    return {"extracted": task.answer.extract(generated), "reference_extracted": task.answer.extract(reference)}
