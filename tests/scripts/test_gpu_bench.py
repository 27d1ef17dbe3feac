"""scripts/gpu_bench.py rehearsed on CPU: every run kind ends as a cell result, one JSON document holds them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_rehearsal_writes_every_run_and_the_comparisons(tmp_path: Path) -> None:
    out = tmp_path / "gpu-bench.json"
    runs = "lora,lora-packed,lora-packed-no-sampler,lora-packed-compiled,qlora-packed,full"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gpu_bench.py"),
            "--rehearse",
            "--steps",
            "3",
            "--runs",
            runs,
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads(out.read_text())
    by_name = {r["run"]: r for r in document["runs"]}
    assert list(by_name) == runs.split(",")
    assert all(r["status"] == "success" and r["steps"] == 3 and r["tokens_per_s"] > 0 for r in by_name.values())
    assert by_name["lora-packed"]["padding_fraction"] == 0.0 < by_name["lora"]["padding_fraction"]
    assert by_name["lora"]["trainable_params"] < by_name["full"]["trainable_params"] == by_name["full"]["total_params"]
    assert (
        by_name["lora"]["model_flops_per_token"]
        == 4 * by_name["lora"]["total_params"] + 2 * by_name["lora"]["trainable_params"]
    )
    assert by_name["lora-packed-compiled"]["compile_s"] is None  # CPU: compile skipped with a warning
    comparisons = document["comparisons"]
    assert comparisons["packed_over_padded_tokens_per_s"]["lora"] is not None
    assert comparisons["sampler_overhead"] is not None
    assert document["environment"]["packages"]["peft"]


def test_unknown_run_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_bench.py"), "--out", "x.json", "--runs", "lora,lorra"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "unknown run(s) lorra; valid: lora, lora-packed" in done.stderr
