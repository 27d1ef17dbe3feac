"""Quality metrics: ROUGE with ``rouge-score``, classification with scikit-learn."""

from __future__ import annotations

import re
from typing import Any

from harness.tasks.extract import AnswerRule

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


def exact_match_scores(
    predictions: list[str], references: list[str], answer: AnswerRule | None = None
) -> dict[str, float]:
    """The share of outputs equal to their reference after :func:`normalise_answer`; with an
    answer extractor, the share whose extracted answer equals the reference's (numbers as
    numbers), and ``no_answer_rate``, the share of outputs the extractor finds no answer in."""
    count = max(len(predictions), 1)
    pairs = list(zip(predictions, references, strict=True))
    if answer is None:
        hits = sum(normalise_answer(p) == normalise_answer(r) for p, r in pairs)
        return {"exact_match": hits / count}
    return {
        "exact_match": sum(answer.matches(p, r) for p, r in pairs) / count,
        "no_answer_rate": sum(answer.extract(p) is None for p in predictions) / count,
    }


def classification_baselines(counts: dict[str, int]) -> dict[str, dict[str, float]]:
    """What a model that learned nothing scores on an evaluation set with these class counts.

    - **majority class**: always predicts the most frequent class; its accuracy is that class's
      share p, its macro-F1 2p/(1+p)/C (the other classes score 0);
    - **uniform chance**: guesses each of the C classes with probability 1/C; expected accuracy
      1/C, per class precision = its share and recall = 1/C (macro F1 from those per-class values).
    """
    total = sum(counts.values())
    if not total or len(counts) < 2:
        return {}
    classes = len(counts)
    shares = {name: n / total for name, n in counts.items()}
    top = max(shares, key=shares.__getitem__)
    p = shares[top]
    majority = {
        "accuracy": p,
        "precision_macro": p / classes,
        "recall_macro": 1 / classes,
        "f1_macro": 2 * p / (1 + p) / classes,
    }
    f1 = [2 * share / classes / (share + 1 / classes) for share in shares.values()]
    uniform = {
        "accuracy": 1 / classes,
        "precision_macro": 1 / classes,
        "recall_macro": 1 / classes,
        "f1_macro": sum(f1) / classes,
    }
    return {f"majority class ({top}, {100 * p:.1f} % of the evaluation set)": majority, "uniform chance": uniform}
