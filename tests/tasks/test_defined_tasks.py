"""Tasks a matrix defines from its own CSV files, with no code: a binary classification and a
generation task run end to end (plan, cell, reload, report) with their own labels everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.errors import ConfigError
from harness.matrix import load_matrix

EMOTION = Path(__file__).resolve().parents[2] / "harness" / "data" / "emotion"
LABELS = ["negative", "positive"]  # sadness (0) and joy (1) of emotion, relabelled
TRAIN = {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-2, "progress_bar": False, "log_every": 1}
DATA = {
    "max_train_samples": 16,
    "max_eval_samples": 16,
    "max_source_tokens": 48,
    "max_target_tokens": 8,
    "max_new_tokens": 6,
}


def _csv_files(folder: Path) -> dict[str, str]:
    """Binary sentiment CSVs with string labels and their own column names, from real tweets."""
    files = {}
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (EMOTION / f"{split}.jsonl").read_text().splitlines()]
        picked = [r for r in rows if r["label"] in (0, 1)][:200]
        frame = pd.DataFrame({"tweet": [r["text"] for r in picked], "sentiment": [LABELS[r["label"]] for r in picked]})
        files[split] = str(folder / f"tweets-{split}.csv")
        frame.to_csv(files[split], index=False)
    return files


def _generation_files(folder: Path) -> dict[str, str]:
    """A copy-the-first-word task: input a tweet, target its first word (exact match scores it)."""
    files = {}
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (EMOTION / f"{split}.jsonl").read_text().splitlines()][:100]
        frame = pd.DataFrame({"prompt": [r["text"] for r in rows], "answer": [r["text"].split()[0] for r in rows]})
        files[split] = str(folder / f"firstword-{split}.csv")
        frame.to_csv(files[split], index=False)
    return files


def _matrix(tmp_path: Path, tasks: list, models: list[str], methods: list[str]) -> Path:
    path = tmp_path / "defined.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "defined",
                "output_dir": str(tmp_path / "out"),
                "models": models,
                "methods": methods,
                "tasks": tasks,
                "seeds": [0],
                "defaults": {
                    "train": TRAIN,
                    "data": DATA,
                    "tracking": {"enabled": False},
                    "telemetry": {"enabled": False},
                },
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.cell import run_cell

    root = tmp_path_factory.mktemp("binary")
    task = {
        "name": "tweets",
        "kind": "classification",
        "labels": LABELS,
        "source": {"files": _csv_files(root), "fields": {"text": "tweet", "label": "sentiment"}},
    }
    path = _matrix(root, [task], ["tiny-bert", "tiny-t5"], ["lora"])
    for cell in load_matrix(path).active:
        assert run_cell(cell.config).status == "success"
    return path


def test_a_binary_csv_task_has_its_own_labels_everywhere(binary: Path) -> None:
    from harness.cell import load_trained
    from harness.result import load_result

    for cell in load_matrix(binary).active:
        result = load_result(cell.folder)
        assert result.config["task_definition"]["labels"] == LABELS
        assert set(result.reports["per_class"]) == set(LABELS)
        assert result.reports["confusion_matrix"]["labels"] == LABELS
        assert len(result.reports["confusion_matrix"]["matrix"]) == 2
        predictions = [json.loads(line) for line in (cell.folder / "predictions.jsonl").read_text().splitlines()]
        assert {p["reference"] for p in predictions} <= set(LABELS)
        assert {p["prediction"] for p in predictions} <= set(LABELS) | {None}
        model, *_ = load_trained(cell.folder)
        if cell.model == "tiny-bert":  # the head has as many outputs as the task has labels
            assert model.config.num_labels == 2 and model.config.id2label == {0: "negative", 1: "positive"}
        # macro-F1 is over the task's two classes: a one-class predictor scores at most 1/2 x its F1
        scores = [v["f1-score"] for v in result.reports["per_class"].values()]
        assert result.metrics["f1_macro"] == pytest.approx(sum(scores) / 2)


def test_plan_counts_the_binary_head(binary: Path) -> None:
    from harness.config import CellConfig
    from harness.dispatch import commands
    from harness.methods.build import count_parameters
    from harness.result import load_result

    rows = {r["model"]: r for r in commands.plan(binary, with_status=False).rows}
    bert = next(c for c in load_matrix(binary).active if c.model == "tiny-bert")
    assert rows["tiny-bert"]["trainable_params"] == load_result(bert.folder).efficiency.trainable_params
    six_classes = count_parameters(CellConfig(model="tiny-bert", method="lora", task="emotion"))[0]
    # the classifier (hidden 64 -> labels, trained through modules_to_save) has 4 outputs fewer than emotion's
    assert six_classes - rows["tiny-bert"]["trainable_params"] == 4 * (64 + 1)


def test_the_report_uses_the_tasks_labels(binary: Path) -> None:
    from harness.report import build_report

    folder = build_report(binary)
    quality = pd.read_csv(folder / "classification_quality.csv")
    assert set(quality["task"]) == {"tweets"}
    assert "over the task's 2 classes" in (folder / "report.md").read_text()


@pytest.mark.parametrize(("model", "metric"), [("tiny-llama", "exact_match"), ("tiny-t5", "rouge")])
def test_a_generation_csv_task_runs_with_its_metric(tmp_path: Path, model: str, metric: str) -> None:
    from harness.cell import run_cell

    task = {
        "name": "firstword",
        "kind": "generation",
        "metric": metric,
        "instruction": "Repeat the first word.",
        "source": {"files": _generation_files(tmp_path), "fields": {"text": "prompt", "target": "answer"}},
    }
    (cell,) = load_matrix(_matrix(tmp_path, [task], [model], ["lora"])).active
    result = run_cell(cell.config)
    assert result.status == "success", result.traceback
    expected = {"exact_match"} if metric == "exact_match" else {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert set(result.metrics) == expected
    losses = [loss for _, loss in result.efficiency.loss_history]
    assert sum(losses[-2:]) < sum(losses[:2])
    first = json.loads((cell.folder / "predictions.jsonl").read_text().splitlines()[0])
    assert set(first) == {"index", "row", "input", "prediction", "reference"} and first["reference"]
    assert isinstance(first["row"], int) and first["input"]  # traceable to the user's file


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "classification"}, "a classification task needs labels"),
        ({"kind": "classification", "labels": ["a", "a"]}, "at least two distinct"),
        ({"kind": "classification", "labels": ["a", "b"], "metric": "rouge"}, "metric is for generation tasks"),
        # its one scoring named is still refused: one task, one id
        (
            {"kind": "classification", "labels": ["a", "b"], "metric": "classification"},
            "metric is for generation tasks",
        ),
        ({"kind": "generation", "labels": ["a", "b"]}, "labels are for classification tasks"),
        ({"kind": "generation", "metric": "bleu"}, "metric"),
        ({"labels": ["a", "b"]}, "also needs kind: classification or generation"),
        ({"kind": "generation"}, "give its data with source"),
    ],
)
def test_a_bad_task_definition_is_one_line(tmp_path: Path, entry: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_matrix(_matrix(tmp_path, [{"name": "mine", **entry}], ["tiny-bert"], ["lora"]))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_defined_task_may_not_take_a_bundled_name(tmp_path: Path) -> None:
    entry = {
        "name": "emotion",
        "kind": "classification",
        "labels": LABELS,
        "source": {"files": _csv_files(tmp_path), "fields": {"text": "tweet", "label": "sentiment"}},
    }
    with pytest.raises(ConfigError, match="is a bundled task; give the task you define another name"):
        load_matrix(_matrix(tmp_path, [entry], ["tiny-bert"], ["lora"]))


def test_a_label_outside_the_tasks_labels_is_refused_at_plan_time(tmp_path: Path) -> None:
    from harness.dispatch import commands

    entry = {
        "name": "tweets",
        "kind": "classification",
        "labels": ["negative", "neutral"],
        "source": {"files": _csv_files(tmp_path), "fields": {"text": "tweet", "label": "sentiment"}},
    }
    with pytest.raises(ConfigError, match="label 'positive' is not one of negative, neutral"):
        commands.plan(_matrix(tmp_path, [entry], ["tiny-bert"], ["lora"]), with_status=False)
