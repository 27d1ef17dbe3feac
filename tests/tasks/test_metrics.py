"""Metrics agree with rouge-score and scikit-learn on real bundled data."""

from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from harness.config import DataConfig
from harness.tasks import classification_scores, load_split, resolve_task, rouge_scores
from harness.tasks.metrics import split_sentences


def test_rouge_matches_rouge_score_on_billsum() -> None:
    rows = load_split(resolve_task("billsum"), DataConfig(), "test", limit=12)
    references = [r["summary"] for r in rows]
    # Predictions: the first sentences of each bill's own text, a realistic lead baseline.
    predictions = [" ".join(r["text"].split()[:80]) for r in rows]
    ours = rouge_scores(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        expected = sum(
            scorer.score(split_sentences(r), split_sentences(p))[key].fmeasure for p, r in zip(predictions, references)
        ) / len(rows)
        assert ours[key] == pytest.approx(expected)
    # ROUGE-1 and -L do not depend on sentence splitting: they match the raw library call too.
    raw = sum(scorer.score(r, p)["rouge1"].fmeasure for p, r in zip(predictions, references)) / len(rows)
    assert ours["rouge1"] == pytest.approx(raw)
    assert 0 < ours["rouge2"] < ours["rouge1"] < 1


def test_rougelsum_scores_newline_separated_sentences() -> None:
    # A break needs a capital (or bracket/quote) next, so "sec. 5" or "; third" stay in one sentence.
    assert (
        split_sentences("First point. Second point; third. (a) item") == "First point.\nSecond point; third.\n(a) item"
    )


def test_classification_matches_sklearn_on_emotion() -> None:
    task = resolve_task("emotion")
    rows = load_split(task, DataConfig(), "test", limit=500)
    references = [r["label"] for r in rows]
    rng = random.Random(0)
    predictions = [ref if rng.random() < 0.6 else rng.randrange(6) for ref in references]
    predictions[:5] = [-1] * 5  # text that named no label
    metrics, reports = classification_scores(predictions, references, list(task.label_names))
    labels = list(range(6))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    for average in ("macro", "weighted"):
        kwargs = {"labels": labels, "average": average, "zero_division": 0}
        assert metrics[f"precision_{average}"] == pytest.approx(precision_score(references, predictions, **kwargs))
        assert metrics[f"recall_{average}"] == pytest.approx(recall_score(references, predictions, **kwargs))
        assert metrics[f"f1_{average}"] == pytest.approx(f1_score(references, predictions, **kwargs))
    assert metrics["invalid_prediction_rate"] == pytest.approx(5 / 500)
    matrix = reports["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == 495  # the 5 invalid predictions fall outside the label columns
    assert set(reports["per_class"]) == set(task.label_names)
