"""`harness report --peft-results DIR`: cells tagged peft_experiment beside peft's published result
files (three real ones in fixtures/peft_results). The cells are real: a tiny-llama matrix on
billsum, run once (module fixture), LoRA on two seeds, IA3 with one seed never run, prompt
tuning never run (its trainable count is the plan's), and a zero-shot cell tagged with an
experiment that has no result file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.errors import ConfigError
from harness.matrix import load_matrix
from harness.report import build_report
from harness.report.load import HEADLINE, row_from_flat, rows_from_matrix
from harness.report.peft_reference import peft_table, planned_trainable, read_peft_results
from harness.report.stats import summarize
from harness.result import load_result

FIXTURES = Path(__file__).parent / "fixtures" / "peft_results"
LORA, IA3, PROMPT = "lora--llama-3.2-3B-rank32", "ia3--llama-3.2-3B-default", "prompt_tuning--llama-3.2-3B-default"
NO_FILE = "fourierft--llama-3.2-3B-default"  # an experiment of peft's with no file in the fixtures
GIB = 1024**3

MATRIX: dict[str, Any] = {
    "name": "pefttest",
    "models": ["tiny-llama"],
    "methods": [
        {"name": "lora", "set": {"tags": {"peft_experiment": LORA}}},
        # peft's own spelling of the experiment (run_info.experiment_name) matches too
        {"name": "ia3", "set": {"tags": {"peft_experiment": "ia3/llama-3.2-3B-default"}}},
        {"name": "prompt_tuning", "set": {"tags": {"peft_experiment": PROMPT}}},
        {"name": "zeroshot", "set": {"tags": {"peft_experiment": NO_FILE}}},
    ],
    "tasks": ["billsum"],
    "seeds": [0, 1],
    "defaults": {
        "train": {"max_steps": 3, "batch_size": 4, "learning_rate": 1.0e-2, "progress_bar": False, "log_every": 0},
        "data": {
            "max_train_samples": 8,
            "max_eval_samples": 4,
            "max_source_tokens": 48,
            "max_target_tokens": 8,
            "max_new_tokens": 4,
        },
        "telemetry": {"enabled": False},
    },
    "exclude": [{"match": {"method": "zeroshot", "seed": 1}, "reason": "one zero-shot cell is enough"}],
}
NEVER_RUN = {("ia3", 1), ("prompt_tuning", 0), ("prompt_tuning", 1)}


@pytest.fixture(scope="module")
def matrix_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.cell import run_cell

    root = tmp_path_factory.mktemp("peftref")
    path = root / "pefttest.yaml"
    path.write_text(yaml.safe_dump({**MATRIX, "output_dir": str(root / "out")}))
    for cell in load_matrix(path).active:
        if (cell.method, cell.seed) not in NEVER_RUN:
            run_cell(cell.config)
    return path


@pytest.fixture(scope="module")
def report(matrix_file: Path) -> Path:
    return build_report(matrix_file, peft_results=FIXTURES)


@pytest.fixture(scope="module")
def results(matrix_file: Path) -> dict[tuple[str, int], Any]:
    return {
        (cell.method, cell.seed): load_result(cell.folder)
        for cell in load_matrix(matrix_file).active
        if (cell.folder / "result.json").is_file()
    }


def _peft(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_the_table_sets_each_experiment_beside_its_file(report: Path, results):
    table = pd.read_csv(report / "peft_comparison.csv").set_index("peft_experiment")
    assert list(table.index) == [LORA, IA3, PROMPT, NO_FILE]
    lora, peft = table.loc[LORA], _peft(LORA)["train_info"]
    # harness side: the mean over the two finished seeds, with its t interval
    headline = HEADLINE["rouge"]
    accuracy = summarize([results["lora", s].metrics[headline] for s in (0, 1)])
    assert lora["test_accuracy_metric"] == headline and lora["seeds_finished"] == 2
    assert lora["test_accuracy_mean"] == pytest.approx(accuracy.mean)
    assert lora["test_accuracy_ci95"] == pytest.approx(accuracy.half_width)
    # peft side: its file's figures, and harness - peft
    assert lora["peft_test_accuracy"] == peft["metrics"][-1]["test accuracy"]
    assert lora["test_accuracy_diff"] == pytest.approx(accuracy.mean - peft["metrics"][-1]["test accuracy"])
    assert lora["peft_forgetting"] == peft["metrics"][-1]["forgetting"]
    trainable = results["lora", 0].efficiency.trainable_params
    assert lora["trainable_params_source"] == "result"
    assert lora["trainable_params"] == trainable and lora["peft_trainable_params"] == peft["num_trainable_params"]
    assert lora["trainable_params_diff"] == trainable - peft["num_trainable_params"]
    train_s = (
        results["lora", 0].efficiency.phases["train"].wall_s + results["lora", 1].efficiency.phases["train"].wall_s
    ) / 2
    assert lora["train_wall_s"] == pytest.approx(train_s)
    assert lora["train_time_diff_s"] == pytest.approx(train_s - peft["train_time"])
    for name, key in (("avg", "reserved_avg"), ("p99", "reserved_99th"), ("max", "max")):
        assert lora[f"peft_memory_{name}_bytes"] == peft[f"accelerator_memory_{key}"]
    # a CPU's per-step RSS is shown, never subtracted from peft's reserved GPU memory
    step = [results["lora", s].efficiency.phases["train"] for s in (0, 1)]
    assert lora["step_memory_measure"] == "rss"
    assert lora["step_memory_avg_bytes"] == pytest.approx(sum(p.step_memory_avg_bytes for p in step) / 2)
    assert pd.isna(lora["memory_avg_diff_bytes"]) and pd.isna(lora["memory_max_diff_bytes"])
    assert lora["peft_status"] == "success" and pd.isna(lora["status"])


def test_a_missing_side_is_marked(report: Path, results):
    table = pd.read_csv(report / "peft_comparison.csv").set_index("peft_experiment")
    ia3 = table.loc[IA3]  # one seed of two ran: its figures are that seed's, the row says what is missing
    assert (ia3["seeds_finished"], ia3["seeds_planned"]) == (1, 2) and ia3["status"] == "1 missing"
    assert ia3["peft_trainable_params"] == _peft(IA3)["train_info"]["num_trainable_params"]
    assert pd.isna(ia3["test_accuracy_ci95"]) and not pd.isna(ia3["test_accuracy_diff"])
    none = table.loc[NO_FILE]  # no peft file: the harness side only, no difference
    assert none["status"] == "no peft result" and not pd.isna(none["test_accuracy_mean"])
    assert pd.isna(none["peft_test_accuracy"]) and pd.isna(none["test_accuracy_diff"])
    text = (report / "report.md").read_text()
    assert "## Beside peft's published results" in text and "`peft_comparison.csv`" in text
    assert "1 peft result file(s) match no cell" in text  # boft's
    assert "peft 0.19.2.dev0 transformers 5.13.1 torch 2.13.0+cu130 on NVIDIA L40S" in text
    assert "⚠ no peft result" in text and "Beside peft&#x27;s published results" in (report / "report.html").read_text()


def test_cells_not_run_compare_their_planned_trainable_count(report: Path, matrix_file: Path, results):
    table = pd.read_csv(report / "peft_comparison.csv").set_index("peft_experiment")
    prompt, peft = table.loc[PROMPT], _peft(PROMPT)["train_info"]["num_trainable_params"]
    assert prompt["status"] == "2 missing" and prompt["trainable_params_source"] == "planned"
    assert (
        prompt["peft_trainable_params"] == peft and prompt["trainable_params_diff"] == prompt["trainable_params"] - peft
    )
    # the plan's count is the one a run records: IA3's seed 1 (not run) against its seed 0 (run)
    matrix = load_matrix(matrix_file)
    planned = planned_trainable(matrix, rows_from_matrix(matrix))
    ia3 = {cell.seed: cell.cell_id for cell in matrix.active if cell.method == "ia3"}
    assert planned[ia3[1]] == results["ia3", 0].efficiency.trainable_params and ia3[0] not in planned
    assert "(planned)" in (report / "report.md").read_text()


def test_a_peft_run_that_did_not_succeed_is_marked(matrix_file: Path, tmp_path: Path):
    folder = tmp_path / "results"
    shutil.copytree(FIXTURES, folder)
    data = _peft(LORA)
    data["train_info"]["status"] = "canceled"
    data["run_info"]["peft_worktree_is_dirty"] = True
    (folder / f"{LORA}.json").write_text(json.dumps(data))
    table = peft_table(rows_from_matrix(load_matrix(matrix_file)), read_peft_results(folder))
    assert table is not None
    row = table.data.set_index("peft_experiment").loc[LORA]
    assert row["status"] == "peft run canceled, peft run from a dirty tree"
    assert table.flagged[0] and table.display["Status"][0].startswith("⚠")


def test_gpu_reserved_memory_is_compared():
    """Harness rows measured on a GPU (per-step reserved bytes) get harness - peft per figure."""
    rows = []
    for seed, avg in ((0, 10 * GIB), (1, 12 * GIB)):
        config = {
            "model": "llama-3.2-3b",
            "method": "lora",
            "task": "gsm8k",
            "seed": seed,
            "tags": {"peft_experiment": LORA},
        }
        row = row_from_flat(cell_id=f"c{seed}", status="success", config=config, flat={})
        row.train_step_memory_measure, row.train_step_memory_avg_bytes = "reserved", float(avg)
        row.train_step_memory_p99_bytes, row.train_step_memory_max_bytes = float(avg + GIB), float(avg + 2 * GIB)
        rows.append(row)
    table = peft_table(rows, read_peft_results(FIXTURES / f"{LORA}.json"))
    assert table is not None
    peft = _peft(LORA)["train_info"]
    row = table.data.iloc[0]
    assert row["memory_avg_diff_bytes"] == pytest.approx(11 * GIB - peft["accelerator_memory_reserved_avg"])
    assert row["memory_p99_diff_bytes"] == pytest.approx(12 * GIB - peft["accelerator_memory_reserved_99th"])
    assert row["memory_max_diff_bytes"] == pytest.approx(13 * GIB - peft["accelerator_memory_max"])
    assert table.display["Δ mem avg"][0] == f"{(11 * GIB - peft['accelerator_memory_reserved_avg']) / GIB:+,.2f}"


def test_untagged_cells_make_no_table():
    config = {"model": "tiny-llama", "method": "lora", "task": "billsum", "seed": 0}
    assert peft_table([row_from_flat(cell_id="c", status="success", config=config, flat={})], {}) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "malformed JSON: Expecting property name enclosed in double quotes (line 1)"),
        ("[1]", "not a peft method_comparison result file (the file: Input should be"),
        ('{"run_info": {}}', "not a peft method_comparison result file (train_info: Field required)"),
        ('{"run_info": {}, "train_info": {"status": "success", "metrics": 3}}', "(train_info.metrics: "),
    ],
)
def test_a_malformed_peft_file_is_refused_in_one_line(tmp_path: Path, content: str, expected: str):
    shutil.copytree(FIXTURES, tmp_path / "results")
    bad = tmp_path / "results" / "bad--one.json"
    bad.write_text(content)
    with pytest.raises(ConfigError) as error:
        read_peft_results(tmp_path / "results")
    message = str(error.value)
    assert message.startswith(f"peft result {bad}: ") and expected in message and "\n" not in message


def test_a_huge_peft_file_is_refused_before_it_is_read(tmp_path: Path):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(9 << 20)
    with pytest.raises(ConfigError, match=r"huge\.json: 9,437,184 bytes, larger than"):
        read_peft_results(huge)


def test_the_cli_refuses_a_missing_or_empty_folder(matrix_file: Path, tmp_path: Path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(matrix_file), "--output", str(out), "--peft-results", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: --peft-results ") and "no such folder" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["report", str(matrix_file), "--output", str(out), "--peft-results", str(tmp_path / "empty")]) == 2
    assert "no peft result files (*.json) in it" in capsys.readouterr().err
    assert not out.exists()  # refused before anything is written
