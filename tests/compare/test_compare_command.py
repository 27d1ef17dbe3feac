"""``harness compare`` on the command line: real runs of a tiny matrix (debug executor, in this
process) compare clean or fail, and each kind of bad input is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from compare_helpers import f1_side

from harness.cli import main
from harness.compare.reference import save_reference
from harness.dispatch import submit

# tiny-bert LoRA memorising 32 training tweets (scored on those same tweets, so a working run
# scores 94-100 % on every seed and a run that cannot learn stays near the majority class)
MATRIX = {
    "name": "comparetiny",
    "executor": {"cluster": "debug"},
    "models": ["tiny-bert"],
    "methods": ["lora"],
    "tasks": ["emotion"],
    "seeds": [0, 1, 2],
    "defaults": {
        "train": {
            "max_steps": 60,
            "batch_size": 8,
            "eval_batch_size": 32,
            "learning_rate": 5.0e-2,
            "progress_bar": False,
            "log_every": 0,
        },
        "data": {"max_source_tokens": 32, "max_train_samples": 32, "max_eval_samples": 32, "eval_split": "train"},
        "tracking": {"enabled": False},
        "telemetry": {"enabled": False},
    },
}
BROKEN_LR = 1.0e-7  # nothing moves: the classifier stays where its initialisation put it


def _run(root: Path, name: str, **defaults_train) -> Path:
    data = json.loads(json.dumps(MATRIX))
    data["output_dir"] = str(root / name)
    data["defaults"]["train"].update(defaults_train)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    report = submit(path)
    assert report.ok and len(report.submitted) == 3
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same matrix run twice, and once with a broken learning rate."""
    import torch

    root = tmp_path_factory.mktemp("compare")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: on a busy machine, more spin against each other
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HF_HUB_OFFLINE", "1")
            return {
                "first": _run(root, "first"),
                "again": _run(root, "again"),
                "broken": _run(root, "broken", learning_rate=BROKEN_LR),
            }
    finally:
        torch.set_num_threads(threads)


def test_two_runs_of_the_same_matrix_compare_clean(runs, capsys):
    assert main(["compare", str(runs["again"]), "--against", str(runs["first"])]) == 0
    out = capsys.readouterr().out
    assert "1 paired row(s); 0 only in NEW, 0 only in REFERENCE" in out and "No gated regression." in out
    folder = Path(yaml.safe_load(runs["again"].read_text())["output_dir"]) / "compare"
    for name in ("compare_quality.csv", "compare_efficiency.csv", "compare_differences.csv", "compare_unpaired.csv"):
        assert (folder / name).is_file(), name
    page = (folder / "compare.html").read_text()
    assert '<section id="harness-compare">' in page and "<h3>Quality</h3>" in page


def test_a_broken_learning_rate_fails_and_says_what_differs(runs, capsys):
    assert main(["compare", str(runs["broken"]), "--against", str(runs["first"])]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION:" in out and "emotion / tiny-bert / lora: accuracy regression" in out
    # the learning rate changed the cell ids; the rows still pair, and the setting is listed
    assert "train.learning_rate" in out and "0.05" in out and "1e-07" in out


def test_a_saved_reference_gates_like_its_run(runs, tmp_path, capsys):
    reference = tmp_path / "reference.json"
    assert main(["compare", str(runs["first"]), "--save", str(reference), "--tolerance", "f1_macro=2"]) == 0
    assert json.loads(reference.read_text())["gate"]["tolerance_points"] == {"f1_macro": 2.0}
    output = ["--output", str(tmp_path / "out")]
    assert main(["compare", str(runs["again"]), "--against", str(reference), *output]) == 0
    folder = Path(yaml.safe_load(runs["broken"].read_text())["output_dir"])
    assert main(["compare", str(folder), "--against", str(reference), *output]) == 1  # an output folder as NEW
    capsys.readouterr()


def _reference(tmp_path: Path, name: str, **kwargs) -> Path:
    return save_reference(f1_side("REFERENCE", {0: 0.8, 1: 0.81}, **kwargs), tmp_path / f"{name}.json")


def _refusal(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), captured.err
    return lines[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    reference = _reference(tmp_path, "ref")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "NEW has no results" in _refusal(capsys, ["compare", str(empty), "--against", str(reference)])
    other = _reference(tmp_path, "other", method="ia3")
    assert "no row of NEW pairs with one of REFERENCE" in _refusal(
        capsys, ["compare", str(other), "--against", str(reference)]
    )
    for tolerance in ("--tolerance=-1", "--tolerance=f1_macro=-0.5"):
        assert "is negative" in _refusal(capsys, ["compare", str(other), "--against", str(reference), tolerance])
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**json.loads(reference.read_text()), "schema_version": 2}))
    assert "schema version 2 is not one this harness reads" in _refusal(
        capsys, ["compare", str(reference), "--against", str(future)]
    )
    assert "unknown aspect 'speed'" in _refusal(
        capsys, ["compare", str(reference), "--against", str(reference), "--gate", "speed"]
    )
    assert "must hold 0" in _refusal(capsys, ["compare", str(reference), "--against", str(reference), "--bound=5:10"])
    assert "give --against REF" in _refusal(capsys, ["compare", str(reference)])
    assert "no such file or folder" in _refusal(
        capsys, ["compare", str(tmp_path / "nope"), "--against", str(reference)]
    )


def test_the_installed_command_exits_2_with_one_line(tmp_path):
    reference = _reference(tmp_path, "ref")
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "compare", str(reference), "--against", str(reference), "--tolerance=-3"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "harness: error: --tolerance: tolerance -3 is negative; give points >= 0 (default 1)"
    ]


def test_an_mlflow_experiment_is_a_side(runs, tmp_path, capsys):
    """The new run collected into MLflow (result.json logged with each cell's run) compares like its folders."""
    from harness.tracking.collect import collect

    collected = collect(runs["again"])
    assert collected.ok
    argv = [
        "compare",
        f"mlflow:{collected.experiment}",
        "--tracking-uri",
        collected.uri,
        "--against",
        str(runs["first"]),
    ]
    assert main([*argv, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "NEW: MLflow experiment" in out and "1 paired row(s)" in out and "No gated regression." in out


def test_an_mlflow_side_without_a_store_is_refused_without_creating_one(tmp_path, capsys):
    store = tmp_path / "mlflow.db"
    argv = ["compare", "mlflow:nothing", "--tracking-uri", f"sqlite:///{store}", "--against", str(tmp_path)]
    assert "no MLflow tracking store" in _refusal(capsys, argv)
    assert not store.exists()
