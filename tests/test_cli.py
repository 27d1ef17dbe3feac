"""The command line: a real run, and bad input as a one-line error with nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_the_bitsandbytes_import_warning_stays_out_of_log_txt(tmp_path: Path) -> None:
    """Full fine-tuning imports peft (and so bitsandbytes) only once the cell's log.txt is open."""
    args = ["run", "--local", "--model", "tiny-bert", "--method", "full", "--task", "emotion", "--no-tracking"]
    args += ["--max-steps", "1", "--set", "data.max_train_samples=4", "--set", "data.max_eval_samples=2"]
    done = run([*args, "--set", "train.progress_bar=false", "--output", "cell"], tmp_path)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "cell" / "log.txt").read_text()
    assert "harness.cell: cell " in log and "parameters:" in log
    assert "gemm_4bit_forward" not in log and "gemm_4bit_forward" not in done.stderr


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
        # issue 24: a key inside a value, numbers that are not settings, a line of bounded length
        (BASE + ["--set", "a=1", "--set", "a.b=2"], {}, "--set: 'a' is given a value and 'a.b' a key inside it"),
        (BASE + ["--set", "train.learning_rate=.inf"], {}, "train.learning_rate: Input should be a finite number"),
        (BASE + ["--set", "method_args.lora_alpha=.nan"], {}, "method_args: lora_alpha: nan is not a finite number"),
        (BASE + ["--seed", str(2**70)], {}, "seed 1180591620717411303424 is out of range"),
        (BASE + ["--set", "m" * 100_000 + "=1"], {}, "(100,000 characters)"),
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


# ---------------------------------------------------------------- --set, as any string


def test_a_key_inside_a_value_of_the_cell_file_is_one_line(tmp_path: Path) -> None:
    from harness.cli import build_parser, cell_from_args
    from harness.errors import ConfigError

    (tmp_path / "cell.yaml").write_text("model: tiny-bert\nmethod: lora\ntask: emotion\ntrain: 5\n")
    args = build_parser().parse_args(["run", "--local", "--config", str(tmp_path / "cell.yaml"), "--set=train.lr=1"])
    with pytest.raises(ConfigError, match=r"cell.yaml: --set train.lr: train is a value in this file, not a mapping"):
        cell_from_args(args)


SET_KEYS = st.sampled_from(
    [
        "seed",
        "train",
        "train.learning_rate",
        "train.max_steps",
        "train.epochs",
        "method_args",
        "method_args.r",
        "method_args.lora_alpha",
        "model_args.x",
        "data",
        "data.source",
        "data.source.files",
        "tags.x",
        "task_definition",
        "a",
        "a.b",
        "",
    ]
)
SET_VALUES = st.one_of(
    st.sampled_from(
        [
            "1",
            "1e-3",
            ".inf",
            "-.inf",
            ".nan",
            "-1",
            str(2**70),
            "[1, 2]",
            "{a: 1}",
            "{r: .nan}",
            "&a 1",
            "*a",
            "'x'",
            "[",
            "{",
            "lora",
            "null",
            "~",
            "yes",
            "",
            "{kind: classification}",
            "1e999",
        ]
    ),
    st.text(max_size=8),
)
SET_ITEMS = st.one_of(
    st.builds(lambda keys, value: ".".join(keys) + "=" + value, st.lists(SET_KEYS, min_size=1, max_size=3), SET_VALUES),
    st.text(max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(SET_ITEMS, max_size=5))
def test_any_set_arguments_give_a_cell_or_one_config_error(items: list[str]) -> None:
    """What `harness run` makes of its flags and --set strings, before it runs anything: a checked
    cell or a one-line ConfigError, never another exception."""
    from harness.cli import build_parser, cell_from_args
    from harness.config import CellConfig
    from harness.errors import ConfigError

    argv = ["run", "--local", "--model", "tiny-bert", "--method", "lora", "--task", "emotion"]
    args = build_parser().parse_args(argv + [f"--set={item}" for item in items])
    try:
        assert isinstance(cell_from_args(args), CellConfig)
    except ConfigError as error:
        assert "\n" not in str(error)
