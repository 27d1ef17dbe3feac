"""Task kinds and scorings: behaviour that varies by kind lives in these entries, not in if-chains.

A **kind** (classification, generation) says which canonical fields a row has, whether its
answers are classes, which head each model family uses, and which scorings it may use. A
**scoring** says how predictions are scored (a function of :mod:`harness.tasks.metrics`), the
report's quality columns, the headline metric (Pareto plots, gain over zero-shot) and the title
and notes of its tables. Data loading, formatting, evaluation, a matrix's task definitions and
the report read these fields; none of them names a kind or a scoring.

Plain data: the report reads it without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.heads import HeadName
from harness.tasks import metrics
from harness.tasks.extract import AnswerRule


@dataclass(frozen=True)
class Scoring:
    name: str
    title: str  # the report's table title
    table: str  # the report's table id (file names: <table>_quality.csv)
    columns: tuple[str, ...]  # quality columns, in table order
    headline: str
    # (predicted, references, label names, the task's answer extractor or None) -> (metrics,
    # reports); classification predictions are class ids (-1: names no label), generation
    # predictions texts
    score: Callable[[list[Any], list[Any], list[str], AnswerRule | None], tuple[dict[str, float], dict[str, Any]]]
    # what it measures, in a sentence's words (an error message: "<kind> is scored with ...")
    measures: str = ""
    # {class name: count in the evaluation set} -> {baseline name: metrics}: the report's
    # reference rows (what a model that learned nothing scores); None: no such baseline
    baselines: Callable[[dict[str, int]], dict[str, dict[str, float]]] | None = None
    # the quality table's note on averaging, given the tasks' class counts ("2/6"); "": none
    averaging: str = ""
    # it compares answers, so a task may name an extractor (harness.tasks.extract) that reads the
    # answer out of the target and the generated text first; otherwise it scores whole texts
    extracts: bool = False


@dataclass(frozen=True)
class TaskKind:
    name: str
    target_field: str  # the canonical field of the answer: label (class) or the target text
    # the head each model family uses; a family missing here has none (BERT cannot generate)
    heads: dict[str, HeadName]
    scorings: tuple[str, ...]  # the first is the default
    # answers are classes named by the task's labels (a definition must list them, a row's answer
    # is read as a class id, predictions are class ids, class weights apply); otherwise texts
    labelled: bool = False


# in the report's order (the study's: summarization, then classification)
SCORINGS: dict[str, Scoring] = {
    scoring.name: scoring
    for scoring in (
        Scoring(
            "rouge",
            "Summarization",
            "summarization",
            ("rouge1", "rouge2", "rougeL"),
            "rougeL",
            lambda predicted, references, labels, answer: (metrics.rouge_scores(predicted, references), {}),
            measures="ROUGE-1/2/L/Lsum against the target text",
        ),
        Scoring(
            "classification",
            "Classification",
            "classification",
            ("accuracy", "precision_macro", "recall_macro", "f1_macro"),
            "f1_macro",
            lambda predicted, references, labels, answer: metrics.classification_scores(predicted, references, labels),
            measures="accuracy and macro/weighted precision, recall and F1",
            baselines=metrics.classification_baselines,
            averaging="Precision, recall and F1 are macro-averaged over the task's {classes} classes.",
        ),
        Scoring(
            "exact_match",
            "Generation (exact match)",
            "exact_match",
            ("exact_match",),
            "exact_match",
            lambda predicted, references, labels, answer: (
                metrics.exact_match_scores(predicted, references, answer),
                {},
            ),
            measures="exact match of the generated text with the target",
            extracts=True,
        ),
    )
}

KINDS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (
        # T5 as text-to-text (label words as targets); Llama and BERT with a classification head
        TaskKind(
            "classification",
            "label",
            {"t5": "seq2seq", "llama": "seqcls", "bert": "seqcls"},
            ("classification",),
            labelled=True,
        ),
        TaskKind("generation", "target", {"t5": "seq2seq", "llama": "causal"}, ("rouge", "exact_match")),
    )
}

# every quality metric a scoring reports, with its label in tables and plots
LABELS: dict[str, str] = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "accuracy": "Accuracy",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)",
    "f1_macro": "F1 (macro)",
    "exact_match": "Exact match",
}
