"""Task data: bundled real data, local files with a field mapping, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import DataConfig, DataSource
from harness.errors import ConfigError
from harness.tasks import class_weights, load_split, resolve_task


def test_bundled_emotion_has_the_published_splits() -> None:
    task = resolve_task("emotion")
    train = load_split(task, DataConfig(), "train", limit=None)
    assert len(train) == 16000 and len(load_split(task, DataConfig(), "test", limit=None)) == 2000
    counts = [sum(r["label"] == c for r in train) for c in range(6)]
    assert counts == [4666, 5362, 1304, 2159, 1937, 572]


def test_bundled_billsum_sample_and_seeded_limits() -> None:
    task = resolve_task("billsum")
    test = load_split(task, DataConfig(), "test", limit=None)
    assert len(test) == 64 and all(r["summary"] for r in test)
    first = load_split(task, DataConfig(), "test", limit=5, seed=1)
    assert first == load_split(task, DataConfig(), "test", limit=5, seed=1)
    assert first != load_split(task, DataConfig(), "test", limit=5, seed=2)


def test_class_weights_follow_n_over_c_times_n_c() -> None:
    assert class_weights([0, 0, 0, 1], 2) == [4 / (2 * 3), 4 / (2 * 1)]


def test_local_csv_with_field_mapping_and_label_names(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("tweet,feeling\nso happy today,joy\nthis is scary,fear\n")
    source = DataSource(files={"train": str(path)}, fields={"text": "tweet", "label": "feeling"})
    rows = load_split(resolve_task("emotion"), DataConfig(source=source), "train", limit=None)
    assert rows == [{"text": "so happy today", "label": 1}, {"text": "this is scary", "label": 4}]


def test_local_jsonl_and_parquet(tmp_path: Path) -> None:
    import pandas as pd

    records = [{"bill": "A bill to do things.", "abstract": "Does things."}]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    pd.DataFrame(records).to_parquet(tmp_path / "b.parquet")
    fields = {"text": "bill", "summary": "abstract"}
    for name in ("b.jsonl", "b.parquet"):
        source = DataSource(files={"test": str(tmp_path / name)}, fields=fields)
        rows = load_split(resolve_task("billsum"), DataConfig(source=source), "test", limit=None)
        assert rows == [{"text": "A bill to do things.", "summary": "Does things."}]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (DataSource(files={"train": "/nonexistent/file.jsonl"}), "data file not found: /nonexistent/file.jsonl"),
        (DataSource(fields={"text": "tweet"}), "column 'tweet'"),
        (DataSource(fields={"txt": "text"}), "unknown field"),
    ],
)
def test_bad_sources_name_the_problem(source: DataSource, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_split(resolve_task("emotion"), DataConfig(source=source), "train", limit=None)


def test_unknown_string_label_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "meh", "label": "boredom"}) + "\n")
    with pytest.raises(ConfigError, match="'boredom' is not one of"):
        load_split(resolve_task("emotion"), DataConfig(source=DataSource(files={"train": str(path)})), "train", None)
