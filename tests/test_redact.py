"""A password in the tracking URI reaches no file, log or printed line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.redact import redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:s3cret@mlflow:5000/", "http://alice:***@mlflow:5000/"),
        ("https://tok3n@host/api", "https://***@host/api"),
        ("at http://a:b:c@h and https://d:e@f", "at http://a:***@h and https://d:***@f"),
        ("sqlite:////scratch/mlflow.db", "sqlite:////scratch/mlflow.db"),
        ("mail alice@example.com", "mail alice@example.com"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_no_file_log_or_output_keeps_the_password(tmp_path: Path, unused_port: int) -> None:
    uri = f"http://alice:s3cret@127.0.0.1:{unused_port}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--local",
            "--model",
            "tiny-bert",
            "--method",
            "lora",
            "--task",
            "emotion",
            "--max-steps",
            "2",
            "--set",
            "data.max_train_samples=8",
            "--set",
            "data.max_eval_samples=4",
            "--set",
            "train.progress_bar=false",
            "--tracking-uri",
            uri,
            "--output",
            "cell",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "tracking: failed" in done.stdout and "alice:***@" in (tmp_path / "cell" / "result.json").read_text()
    for text in [done.stdout, done.stderr] + [
        p.read_text(errors="replace")
        for p in (tmp_path / "cell").rglob("*")
        if p.is_file() and p.suffix in ("", ".json", ".yaml", ".txt", ".csv", ".jsonl")
    ]:
        assert "s3cret" not in text
