"""Quality metrics: ROUGE with ``rouge-score``, classification with scikit-learn."""

from __future__ import annotations

import re
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# Sentence ends for ROUGE-Lsum: it scores newline-separated sentences.
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z(\"'])")


def split_sentences(text: str) -> str:
    lines = [s.strip() for line in text.strip().splitlines() for s in SENTENCE_END.split(line) if s.strip()]
    return "\n".join(lines)


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean F-measure of ROUGE-1/2/L/Lsum (Porter stemming), in [0, 1]."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(split_sentences(reference), split_sentences(prediction))
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    count = max(len(predictions), 1)
    return {key: value / count for key, value in totals.items()}


def classification_scores(
    predictions: list[int], references: list[int], label_names: list[str]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Accuracy and macro/weighted precision, recall and F1, plus a per-class report and
    confusion matrix. A prediction of -1 (text that names no label) counts as wrong."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(label_names)))
    metrics: dict[str, float] = {"accuracy": float(accuracy_score(references, predictions))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, labels=labels, average=average, zero_division=0
        )
        metrics[f"precision_{average}"] = float(precision)
        metrics[f"recall_{average}"] = float(recall)
        metrics[f"f1_{average}"] = float(f1)
    metrics["invalid_prediction_rate"] = sum(p == -1 for p in predictions) / max(len(predictions), 1)
    report = classification_report(
        references, predictions, labels=labels, target_names=label_names, output_dict=True, zero_division=0
    )
    reports = {
        "per_class": {name: report[name] for name in label_names},
        "confusion_matrix": {
            "labels": label_names,
            "matrix": confusion_matrix(references, predictions, labels=labels).tolist(),
        },
    }
    return metrics, reports


def normalise_answer(text: str) -> str:
    """Lowercase, without surrounding punctuation and with single spaces: "Paris." == "paris"."""
    return " ".join(text.lower().split()).strip(".!?,;:\"' ")


def exact_match_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """The share of outputs equal to their reference after :func:`normalise_answer`."""
    hits = sum(normalise_answer(p) == normalise_answer(r) for p, r in zip(predictions, references, strict=True))
    return {"exact_match": hits / max(len(predictions), 1)}
