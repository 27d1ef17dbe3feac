"""The command line: a real run, and bad input as a one-line error with nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = [sys.executable, "-m", "harness.cli"]
# On CPUs with AVX512-BF16 bitsandbytes logs a warning when peft imports it; this stand-in
# makes it take that path on every CPU, so stderr is checked as such a user sees it.
AVX512BF16 = Path(__file__).resolve().parent / "stand_ins" / "avx512bf16"


def avx512bf16_env() -> dict[str, str]:
    paths = [str(AVX512BF16), str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(HARNESS + args, cwd=cwd, capture_output=True, text=True, timeout=600, env=avx512bf16_env())


def test_the_stand_in_makes_bitsandbytes_warn_at_import() -> None:
    """Without it the bad-input checks below would pass on CPUs without the flag whatever the CLI did."""
    done = subprocess.run(
        [sys.executable, "-c", "import peft"], capture_output=True, text=True, timeout=300, env=avx512bf16_env()
    )
    assert done.returncode == 0, done.stderr
    assert "gemm_4bit_forward" in done.stderr


def test_run_local_from_flags(tmp_path: Path) -> None:
    done = run(
        [
            "run",
            "--local",
            "--model",
            "tiny-llama",
            "--method",
            "lora",
            "--task",
            "emotion",
            "--max-steps",
            "3",
            "--set",
            "data.max_train_samples=16",
            "--set",
            "data.max_eval_samples=8",
            "--no-tracking",
            "--set",
            "train.progress_bar=false",
            "--output",
            "cell",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "success" in done.stdout and "accuracy" in done.stdout
    assert (tmp_path / "cell" / "result.json").is_file()


def test_run_local_from_a_config_file(tmp_path: Path) -> None:
    (tmp_path / "cell.yaml").write_text(
        "model: tiny-t5\nmethod: ia3\ntask: billsum\ntrain: {max_steps: 2, batch_size: 2, progress_bar: false}\n"
        "data: {max_train_samples: 4, max_eval_samples: 2, max_source_tokens: 32, max_target_tokens: 8}\n"
        "tracking: {enabled: false}\noutput_dir: out\n"
    )
    done = run(["run", "--local", "--config", "cell.yaml"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "adapter").is_dir()


BASE = ["run", "--local", "--model", "tiny-bert", "--method", "lora", "--task", "emotion", "--no-tracking"]


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (
            ["run", "--local", "--model", "tiny-bert", "--method", "lorra", "--task", "emotion"],
            {},
            "unknown method 'lorra'; valid: lora, qlora",
        ),
        (
            ["run", "--local", "--model", "no-such-model", "--method", "lora", "--task", "emotion"],
            {},
            "unknown model 'no-such-model'; valid: flan-t5-xl",
        ),
        (
            ["run", "--local", "--model", "tiny-bert", "--method", "lora", "--task", "sentiment"],
            {},
            "unknown task 'sentiment'; valid: emotion, billsum",
        ),
        (BASE + ["--set", "data.source.fields={text: tweet}"], {}, "column 'tweet'"),
        (BASE + ["--set", "data.source.files={train: missing.jsonl}"], {}, "data file not found: missing.jsonl"),
        (
            ["run", "--local", "--config", "cell.yaml"],
            {"cell.yaml": "model: tiny-bert\nmethod: [lora\n"},
            "malformed YAML",
        ),
        (
            ["run", "--local", "--config", "cell.yaml"],
            {"cell.yaml": "model: tiny-bert\nmethod: lora\ntask: emotion\ntrian: {}\n"},
            "unknown key 'trian'; valid keys: model (required)",
        ),
        (BASE + ["--set", "train.batchsize=4"], {}, "unknown key 'train.batchsize'; valid keys: max_steps=None"),
        (BASE + ["--set", "method_args.rank=4"], {}, "unknown method_args rank; valid LoraConfig fields"),
        (["run", "--local", "--config", "nope.yaml"], {}, "config file not found: nope.yaml"),
        # hostile or careless files
        (
            ["run", "--local", "--config", "cell.yaml"],
            {"cell.yaml": b"model: tiny-bert\nmethod: lora\ntask: caf\xe9\n"},
            "not UTF-8 text",
        ),
        (
            ["run", "--local", "--config", "cell.yaml"],
            {
                "cell.yaml": "t: &t [query, value]\nmodel: tiny-bert\nmethod: lora\ntask: emotion\nmethod_args: {target_modules: *t}\n"
            },
            "YAML aliases (*t) are not allowed",
        ),
        (
            ["run", "--local", "--config", "cell.yaml"],
            {"cell.yaml": "model: tiny-bert\nmethod: lora\nmethod: ia3\ntask: emotion\n"},
            "duplicate key 'method'",
        ),
        (BASE + ["--set", "method_args.task_type=SEQ_CLS"], {}, "method_args task_type are set by the harness"),
        (
            BASE + ["--set", "method_args.target_modules=[nope]"],
            {},
            "target_modules ['nope'] match no layer of this model; its layer names: ",
        ),
        (BASE + ["--set", "train.learning_rate=-1e-3"], {}, "train.learning_rate: Input should be greater than 0"),
        (
            BASE + ["--set", "data.source.fields={txt: text}"],
            {},
            "data.source.fields: unknown field(s) txt for task 'emotion'; valid: text, label",
        ),
        (
            BASE + ["--set", "data.source=train.csv"],
            {},
            "data.source: Input should be a valid dictionary or instance of DataSource (a mapping; valid keys: hub_id",
        ),
        (
            BASE + ["--set", "data.source.fieldz={}"],
            {},
            "unknown key 'data.source.fieldz'; valid keys: hub_id=None, revision=None, files={}",
        ),
        (
            BASE + ["--set", "data.source.files={train: d.csv, test: d.csv}"],
            {"d.csv": "text,label\nhello,1\nworld,\n"},
            "split 'train' row 1: the label is empty",
        ),
        (
            BASE + ["--set", "data.source.files={train: d.jsonl, test: d.jsonl}"],
            {"d.jsonl": '{"text": "a", "label": 1}\n[1, 2]\n'},
            "d.jsonl record 2: expected a JSON object with named fields, got list",
        ),
        (
            BASE + ["--set", "data.source.files={train: d.jsonl, test: d.jsonl}"],
            {"d.jsonl": '{"text": "a", "label": 2.7}\n'},
            "label 2.7 is not a whole class id",
        ),
        (
            BASE + ["--set", "data.source.files={train: d.jsonl, test: d.jsonl}"],
            {"d.jsonl": '{"text": "", "label": 1}\n'},
            "split 'train' row 0: field 'text' is empty",
        ),
        (
            BASE + ["--set", "data.source.files={train: d.jsonl, test: d.jsonl}"],
            {"d.jsonl": '{"text": null, "label": 1}\n'},
            "field 'text' is empty",
        ),
        (
            BASE + ["--set", "data.source.files={train: d.jsonl, test: d.jsonl}"],
            {"d.jsonl": '{"text": "a", "label": 1}\n{oops\n'},
            "d.jsonl line 2: not JSON",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, args: list[str], files: dict[str, str | bytes], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    before = set(tmp_path.rglob("*"))
    done = run(args, tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), done.stderr
    assert message in lines[0]
    assert set(tmp_path.rglob("*")) == before, "nothing may be written for bad input"
