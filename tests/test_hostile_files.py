"""Files and names a careless or hostile user gives (issue 24): JSON nested past what Python can
read, a local model's config.json that is not a JSON object of UTF-8 text, a model named ``..``.
Each is one line naming the file and the problem (exit 2, nothing written), never a traceback, and
no cell folder lands outside the output folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.methods.registry import read_adapter_config
from harness.models.registry import resolve_model
from harness.tasks.data import read_table

DEEP = "[" * 100_000 + "]" * 100_000  # the file: past the json parser's recursion limit
BASE = ["run", "--local", "--model", "tiny-bert", "--method", "lora", "--task", "emotion", "--no-tracking"]
DATA = ["--set", "data.source.files={train: d.jsonl, test: d.jsonl}"]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (
            BASE + DATA,
            {"d.jsonl": '{"text": "a", "label": 1}\n' + DEEP + "\n"},
            "data file d.jsonl line 2: nested deeper than Python can read",
        ),
        (
            BASE + ["--set", "method_args.from=adapter_config.json"],
            {"adapter_config.json": DEEP},
            "method_args.from 'adapter_config.json': nested deeper than Python can read",
        ),
        (
            ["run", "--local", "--model", "model", "--method", "lora", "--task", "emotion", "--no-tracking"],
            {"model/config.json": '["model_type", "bert"]'},
            "model config model/config.json: expected a JSON object with a model_type, got list",
        ),
    ],
    ids=["data row", "method_args.from", "model config.json"],
)
def test_one_line_and_nothing_written(tmp_path: Path, args: list[str], files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    before = set(tmp_path.rglob("*"))
    done = _cli(args, tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), done.stderr
    assert message in lines[0]
    assert set(tmp_path.rglob("*")) == before, "nothing may be written for bad input"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("d.jsonl", '{"text": "a", "label": 1}\n' + DEEP + "\n", "d.jsonl line 2: nested deeper than Python can read"),
        ("d.json", "[" + DEEP + "]", "d.json: nested deeper than Python can read"),
        ("d.jsonl", '{"text": "a", "label": 1}\n{oops\n', "d.jsonl line 2: not JSON ("),  # once, not wrapped twice
    ],
)
def test_a_data_file_nested_too_deep_names_the_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_table(path)
    text = str(info.value)
    assert text.startswith(f"data file {path}") and message in text and text.count("data file") == 1, text


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DEEP, "nested deeper than Python can read"),
        # deep enough for the cell's config dump (YAML, recursive) to fail later: refused now
        (json.dumps({"peft_type": "LORA", "r": 4, "x": _nested(200)}), "nested more than 64 levels deep"),
    ],
    ids=["past the parser", "past the matrix files' depth"],
)
def test_method_args_from_nested_too_deep(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "adapter_config.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_adapter_config(str(path), "lora")
    path.write_text(json.dumps({"peft_type": "LORA", "r": 4, "x": _nested(60)}))
    assert read_adapter_config(str(path), "lora")["r"] == 4  # the depth a matrix file may have is read


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"model_type": "bert",', "not JSON (Expecting property name enclosed in double quotes"),
        (b"[1, 2]", "expected a JSON object with a model_type, got list"),
        (b'"bert"', "expected a JSON object with a model_type, got str"),
        ('{"model_type": "b\xe9rt"}'.encode("latin-1"), "not UTF-8 text (byte 17)"),
        (DEEP.encode(), "nested deeper than Python can read"),
        (b'{"model_type": ["bert"]}', "model_type must be a string, got list"),
    ],
    ids=["bad JSON", "a list", "a string", "not UTF-8", "nested too deep", "model_type a list"],
)
def test_a_local_model_with_a_bad_config_json_is_one_line(tmp_path: Path, raw: bytes, message: str) -> None:
    (tmp_path / "config.json").write_bytes(raw)
    with pytest.raises(ConfigError) as info:
        resolve_model(str(tmp_path))
    text = str(info.value)
    assert text.startswith(f"model config {tmp_path / 'config.json'}: ") and message in text
    assert text.isprintable()


@pytest.mark.parametrize("model", ["..", ".", "ABSOLUTE"])
def test_run_local_keeps_the_cell_folder_under_outputs_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    """``harness run --local --model ..`` named its folder ``outputs/local/emotion/../lora/...``:
    the folder now takes the model's slug as a matrix does, so no model name climbs out."""
    from harness import cli
    from harness.tracking import record

    models = tmp_path / "models"
    work = models / "work"
    work.mkdir(parents=True)
    for folder in (models, work):  # '..' and '.' are local model folders of a supported type
        (folder / "config.json").write_text('{"model_type": "bert"}')
    monkeypatch.chdir(work)
    folders: list[Path] = []

    class Ran(Exception):
        pass

    def run_cell(config: Any) -> None:
        folders.append(Path(config.output_dir))
        raise Ran

    monkeypatch.setattr(record, "run_cell", run_cell)
    name = str(models) if model == "ABSOLUTE" else model
    with pytest.raises(Ran):
        cli.main(["run", "--local", "--model", name, "--method", "lora", "--task", "emotion", "--no-tracking"])
    (folder,) = folders
    root = (work / "outputs" / "local").resolve()
    assert ".." not in folder.parts and not folder.is_absolute()
    assert (work / folder).resolve().is_relative_to(root / "emotion")
    assert folder.parts[:3] == ("outputs", "local", "emotion") and folder.parts[4] == "lora"
