"""Task kinds and scorings: behaviour that varies by kind lives in these entries, not in if-chains.

A **kind** (classification, generation) says which canonical fields a row has, which head
each model family uses, and which scorings it may use. A **scoring** says how predictions
are scored (a function of :mod:`harness.tasks.metrics`), the report's quality columns, the
headline metric (Pareto plots, gain over zero-shot) and the title of its tables.

Plain data: the report reads it without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.tasks import metrics


@dataclass(frozen=True)
class Scoring:
    name: str
    title: str  # the report's table title
    table: str  # the report's table id (file names: <table>_quality.csv)
    columns: tuple[str, ...]  # quality columns, in table order
    headline: str
    # (predicted, references, label names) -> (metrics, reports); classification predictions are
    # class ids (-1: names no label), generation predictions texts
    score: Callable[[list[Any], list[Any], list[str]], tuple[dict[str, float], dict[str, Any]]]
    # {class name: count in the evaluation set} -> {baseline name: metrics}: the report's
    # reference rows (what a model that learned nothing scores); None: no such baseline
    baselines: Callable[[dict[str, int]], dict[str, dict[str, float]]] | None = None


@dataclass(frozen=True)
class TaskKind:
    name: str
    target_field: str  # the canonical field of the answer: label (class) or the target text
    # the head each model family uses; a family missing here has none (BERT cannot generate)
    heads: dict[str, str]
    scorings: tuple[str, ...]  # the first is the default


# in the report's order (the study's: summarization, then classification)
SCORINGS: dict[str, Scoring] = {
    scoring.name: scoring
    for scoring in (
        Scoring("rouge", "Summarization", "summarization", ("rouge1", "rouge2", "rougeL"), "rougeL",
                lambda predicted, references, labels: (metrics.rouge_scores(predicted, references), {})),
        Scoring("classification", "Classification", "classification",
                ("accuracy", "precision_macro", "recall_macro", "f1_macro"), "f1_macro",
                lambda predicted, references, labels: metrics.classification_scores(predicted, references, labels),
                baselines=metrics.classification_baselines),
        Scoring("exact_match", "Generation (exact match)", "exact_match", ("exact_match",), "exact_match",
                lambda predicted, references, labels: (metrics.exact_match_scores(predicted, references), {})),
    )
}

KINDS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (
        # T5 as text-to-text (label words as targets); Llama and BERT with a classification head
        TaskKind("classification", "label", {"t5": "seq2seq", "llama": "seqcls", "bert": "seqcls"},
                 ("classification",)),
        TaskKind("generation", "target", {"t5": "seq2seq", "llama": "causal"}, ("rouge", "exact_match")),
    )
}

# every quality metric a scoring reports, with its label in tables and plots
LABELS: dict[str, str] = {
    "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "accuracy": "Accuracy",
    "precision_macro": "Precision (macro)", "recall_macro": "Recall (macro)", "f1_macro": "F1 (macro)",
    "exact_match": "Exact match",
}
