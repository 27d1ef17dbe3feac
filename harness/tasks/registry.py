"""Task presets: plain data. A task is a dataset, its canonical fields and its metric kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.config import ConfigError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data"

TaskKind = Literal["classification", "summarization"]
Family = Literal["t5", "llama", "bert"]
Head = Literal["seq2seq", "causal", "seqcls"]


# The head each model family uses for a task kind; a family missing here has none (BERT cannot generate).
KIND_HEADS: dict[str, dict[str, Head]] = {
    # T5 as text-to-text (label words as targets); Llama and BERT with a classification head
    "classification": {"t5": "seq2seq", "llama": "seqcls", "bert": "seqcls"},
    "summarization": {"t5": "seq2seq", "llama": "causal"},
}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: TaskKind
    # canonical fields every source is mapped onto
    fields: tuple[str, ...]
    hub_id: str
    # split -> bundled offline file (real data, see harness/data/SOURCES.md)
    bundled: dict[str, Path] = field(default_factory=dict)
    label_names: tuple[str, ...] = ()
    # which head each model family uses for this task; a missing family is refused
    heads: dict[str, Head] = field(default_factory=dict)
    description: str = ""


TASKS: dict[str, TaskSpec] = {
    "emotion": TaskSpec(
        name="emotion",
        kind="classification",
        fields=("text", "label"),
        hub_id="dair-ai/emotion",
        bundled={split: BUNDLED_DIR / "emotion" / f"{split}.jsonl" for split in ("train", "validation", "test")},
        # the Hub ClassLabel order
        label_names=("sadness", "joy", "love", "anger", "fear", "surprise"),
        heads=KIND_HEADS["classification"],
        description="dair-ai/emotion, 6-class tweet emotion classification",
    ),
    "billsum": TaskSpec(
        name="billsum",
        kind="summarization",
        fields=("text", "summary"),
        hub_id="FiscalNote/billsum",
        bundled={split: BUNDLED_DIR / "billsum" / f"{split}.jsonl" for split in ("train", "train_clean", "test", "ca_test")},
        heads=KIND_HEADS["summarization"],
        description="BillSum, US Congressional bill summarization (278-bill bundled sample)",
    ),
}


def resolve_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name]


def head_for(task: TaskSpec, family: str, model_name: str) -> Head:
    try:
        return task.heads[family]
    except KeyError:
        raise ConfigError(
            f"task {task.name!r} cannot run on model {model_name!r}: a {family} model has no head for "
            f"{task.kind}; families that can: {', '.join(task.heads)}"
        ) from None
