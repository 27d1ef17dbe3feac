"""The GPU side of a report without a GPU: hand-written result.json files (schema-valid
``Result`` objects) with allocator peaks and NVML energy, for summarization."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.matrix import load_matrix
from harness.report import build_report
from harness.report.stats import t_quantile
from harness.result import Efficiency, PhaseStats, Result, RunRecord, write_result

GIB = 1024**3
ROUGE_L = {
    ("lora", 0): 0.30,
    ("lora", 1): 0.34,
    ("lora", 2): 0.32,
    ("ia3", 0): 0.28,
    ("ia3", 1): 0.26,
    ("zeroshot", 0): 0.20,
}
# what a cell records it ran (result.json's run): the report reads the rank from here
PEFT_CONFIGS = {
    "lora": {"peft_type": "LORA", "r": 2, "lora_alpha": 16, "target_modules": ["q", "v"]},
    "ia3": {"peft_type": "IA3", "target_modules": ["k", "v", "wo"], "feedforward_modules": ["wo"]},
    "zeroshot": None,
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpu")
    path = root / "gpu.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "gpu",
                "output_dir": str(root / "out"),
                "models": ["tiny-t5"],
                "methods": ["zeroshot", "lora", "ia3"],
                "tasks": ["billsum"],
                "seeds": [0, 1, 2],
                "grids": [{"methods": ["zeroshot"], "seeds": [0]}, {"methods": ["lora", "ia3"]}],
                "overrides": [{"match": {"method": "lora"}, "set": {"method_args": {"r": 2}}}],
            }
        )
    )
    for cell in load_matrix(path).active:
        key = (cell.method, cell.seed)
        trains = cell.method != "zeroshot"
        if key == ("ia3", 2):  # out of memory: a result without figures
            write_result(
                cell.folder,
                Result(
                    cell_id=cell.cell_id,
                    status="oom",
                    error="OutOfMemoryError: CUDA out of memory",
                    config=cell.config.model_dump(mode="json"),
                ),
            )
            continue
        scale = {"lora": 1.0, "ia3": 0.8, "zeroshot": 0.5}[cell.method]
        phases = {"eval": PhaseStats(wall_s=60, peak_allocated_bytes=int(4 * GIB * scale), peak_rss_bytes=3 * GIB)}
        if trains:
            phases["train"] = PhaseStats(wall_s=600, peak_allocated_bytes=int(10 * GIB * scale), peak_rss_bytes=3 * GIB)
        energy = (
            {"gpu/train/energy_j": 1e5 * scale + cell.seed, "gpu/eval/energy_j": 1e4}
            if trains
            else {"gpu/eval/energy_j": 1e4}
        )
        rouge_l = ROUGE_L[key]
        write_result(
            cell.folder,
            Result(
                cell_id=cell.cell_id,
                status="success",
                config=cell.config.model_dump(mode="json"),
                metrics={"rouge1": rouge_l + 0.1, "rouge2": rouge_l - 0.1, "rougeL": rouge_l, "rougeLsum": rouge_l},
                efficiency=Efficiency(
                    trainable_params=1000 if cell.method == "lora" else (100 if trains else 0),
                    total_params=10**6,
                    trainable_share=1e-3,
                    phases=phases,
                    train_samples_per_s=2.0 if trains else None,
                    train_tokens_per_s=900.0 if trains else None,
                ),
                telemetry={"metrics": energy},
                run=RunRecord(
                    head="seq2seq",
                    family="t5",
                    peft_config=PEFT_CONFIGS[cell.method],
                    learning_rate=1e-3 if trains else None,
                ),
            ),
        )
    return build_report(path)


def test_summarization_tables(report: Path):
    quality = pd.read_csv(report / "summarization_quality.csv")
    lora = quality[quality["method"] == "lora"].iloc[0]
    values = [ROUGE_L["lora", s] for s in range(3)]
    assert lora["rougeL_mean"] == pytest.approx(statistics.fmean(values))
    assert lora["rougeL_ci95"] == pytest.approx(t_quantile(2) * statistics.stdev(values) / math.sqrt(3))
    # zero-shot ran one seed: its value is taken as a constant, the interval is LoRA's own
    assert lora["rougeL_gain_vs_zeroshot"] == pytest.approx(statistics.fmean(values) - 0.20)
    assert lora["rougeL_gain_vs_zeroshot_ci95"] == pytest.approx(lora["rougeL_ci95"])
    ia3 = quality[quality["method"] == "ia3"].iloc[0]
    assert (ia3["seeds_finished"], ia3["seeds_planned"], ia3["not_finished"]) == (2, 3, "1 oom")

    efficiency = pd.read_csv(report / "summarization_efficiency.csv", dtype={"rank": str})
    ia3 = efficiency[efficiency["method"] == "ia3"].iloc[0]
    assert ia3["train_peak_measure"] == "gpu" and ia3["train_peak_bytes"] == int(10 * GIB * 0.8)
    assert ia3["eval_peak_bytes"] == int(4 * GIB * 0.8)  # phases kept apart
    assert ia3["train_memory_vs_lora"] == pytest.approx(0.8, rel=1e-6)
    lora_energy = statistics.fmean(1e5 + s for s in range(3))
    assert ia3["train_energy_vs_lora"] == pytest.approx(statistics.fmean(8e4 + s for s in range(2)) / lora_energy)
    assert efficiency[efficiency["method"] == "lora"].iloc[0]["rank"] == "2"
    assert "summarization_quality.csv" in (report / "report.md").read_text()
    assert not (report / "classification_quality.csv").exists()


def test_energy_plot_and_unfinished(report: Path):
    names = {p.name for p in (report / "plots").glob("*.png")}
    assert names == {f"pareto_billsum_tiny-t5_{axis}.png" for axis in ("params", "memory", "energy")}
    unfinished = pd.read_csv(report / "not_finished.csv")
    assert list(zip(unfinished["method"], unfinished["seed"], unfinished["status"])) == [("ia3", 2, "oom")]
    markdown = (report / "report.md").read_text()
    assert "GPU allocator" in markdown and "No energy figures" not in markdown
