"""Bench: how long ``harness plan`` takes, with parameter counts, once its count cache is warm.

    .venv/bin/python bench/bench_plan.py [--runs 3]

Three matrices: ``jobs/thesis.yaml`` (86 cells), ``jobs/thesis-tuned.yaml`` (the same grid with a
7-point learning-rate sweep per method: 198 stage-1 cells and 28 selections) and a 500-cell grid
over 20 methods (5 models x 20 methods x 5 seeds on emotion). Each is planned once cold (the counts are computed on the
meta device and cached per library versions), then ``--runs`` times warm as a user runs it: a
new ``harness plan`` process each time, wall clock. Target: under 1 s warm for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness.cli"]
MODELS = ["tiny-bert", "tiny-llama", "tiny-t5", "minilm-l6", "bert-base-uncased"]
# 20 methods that run on every one of these models' classification heads
METHODS = [
    "lora",
    "dora",
    "rslora",
    "adalora",
    "loha",
    "lokr",
    "ia3",
    "vera",
    "oft",
    "boft",
    "hra",
    "fourierft",
    "ln_tuning",
    "delora",
    "gralora",
    "prefix",
    "ptuning",
    "prompt_tuning",
    "tinylora",
    "full",
]


def grid(out: Path) -> dict:
    return {
        "name": "bench-plan-500",
        "output_dir": str(out),
        "models": MODELS,
        "methods": METHODS,
        "tasks": ["emotion"],
        "seeds": list(range(5)),
        "defaults": {"train": {"max_steps": 10}},
    }


def plan_seconds(matrix: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [*HARNESS, "plan", str(matrix), "--no-scripts"], check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "grid500.yaml"
        big.write_text(yaml.safe_dump(grid(Path(tmp) / "out")))
        print(f"{'matrix':<28} {'cold s':>8} {'warm s (median of ' + str(args.runs) + ')':>24}  target")
        for label, matrix in (
            ("jobs/thesis.yaml (86 cells)", REPO / "jobs" / "thesis.yaml"),
            ("thesis-tuned (7-point sweep)", REPO / "jobs" / "thesis-tuned.yaml"),
            ("500 cells x 20 methods", big),
        ):
            cold = plan_seconds(matrix, env)
            warm = statistics.median(plan_seconds(matrix, env) for _ in range(args.runs))
            verdict = "ok" if warm < 1.0 else "SLOW"
            print(f"{label:<28} {cold:>8.2f} {warm:>24.2f}  < 1 s {verdict}")


if __name__ == "__main__":
    main()
