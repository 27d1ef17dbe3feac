"""Bench: plan, submit and status of a 500-cell matrix.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_matrix.py [--cells-per-model 100] [--stub]

Submits to the local SLURM cluster when it is up (jobs held with ``--hold`` and
cancelled afterwards, so nothing trains); otherwise, or with ``--stub``, to stub
sbatch/sacct commands, which measures everything on our side: plan, pickling one
job per cell, the job.json/jobs.jsonl ledgers, and status from result files plus
one sacct call. Target: each under 10 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

MODELS = ["tiny-bert", "tiny-llama", "tiny-t5", "minilm-l6", "bert-base-uncased"]
METHODS = ["lora", "adalora", "loha", "lokr", "ia3", "prefix", "ptuning_v2", "prompt_tuning", "full", "zeroshot"]

STUB = """#!/usr/bin/env bash
case "$(basename "$0")" in
  sbatch) n=$(cat "$STUB_DIR/next" 2>/dev/null || echo 5000); echo $((n + 1)) > "$STUB_DIR/next"; echo "Submitted batch job $n" ;;
  sacct) for f in "$STUB_DIR"/ids; do [ -f "$f" ] && sed 's/$/|PENDING|0:0|00:00:00|None/' "$f"; done ;;
  *) true ;;
esac
"""


def matrix(out: Path, seeds: int, partition: str | None, hold: bool) -> dict:
    return {
        "name": "bench500",
        "output_dir": str(out),
        "executor": {"kind": "slurm", "array_parallelism": 16},
        "resources": {
            "cpus": 1,
            "time_min": 10,
            "signal_delay_s": 60,
            "partition": partition,
            "sbatch_extra": {"hold": True} if hold else {},
        },
        # per-model resources: one job array per model
        "models": [{"name": m, "resources": {"mem_gb": 1 + i}} for i, m in enumerate(MODELS)],
        "methods": METHODS,
        "tasks": ["emotion"],
        "seeds": list(range(seeds)),
        "defaults": {"train": {"max_steps": 10}},
    }


def stub_bin(root: Path) -> None:
    bin_dir = root / "stub-bin"
    bin_dir.mkdir()
    for name in ("sbatch", "srun", "sacct", "squeue", "scancel"):
        path = bin_dir / name
        path.write_text(STUB)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    os.environ["STUB_DIR"] = str(bin_dir)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10, help="5 models x 10 methods x SEEDS cells (default 500)")
    parser.add_argument("--stub", action="store_true", help="stub sbatch/sacct even if the cluster is up")
    parser.add_argument("--keep", action="store_true", help="keep the output folder")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    real = False
    if not args.stub:
        try:
            import slurm_cluster

            if slurm_cluster.cluster_up():
                slurm_cluster.ensure_cluster()
                real = True
        except ImportError:
            pass
    root = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    if not real:
        stub_bin(root)
    partition = os.environ.get("HARNESS_SLURM_PARTITION") if real else None

    from harness.dispatch import plan, status, submit
    from harness.matrix import load_matrix

    path = root / "bench500.yaml"
    path.write_text(yaml.safe_dump(matrix(root / "out", args.seeds, partition, hold=real)))

    t = time.perf_counter()
    m = load_matrix(path)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    plan(path, params=False)
    t_plan_fast = time.perf_counter() - t
    t = time.perf_counter()
    planned = plan(path)
    t_plan = time.perf_counter() - t
    counted = sum(1 for r in planned.rows if r["trainable_params"] is not None)
    t = time.perf_counter()
    report = submit(path)
    t_submit = time.perf_counter() - t
    if not real:  # the stub sacct answers PENDING for every submitted task
        (Path(os.environ["STUB_DIR"]) / "ids").write_text("\n".join(r.job_id for r in report.submitted) + "\n")
    t = time.perf_counter()
    st = status(path)
    t_status = time.perf_counter() - t
    t = time.perf_counter()
    again = submit(path)
    t_again = time.perf_counter() - t

    arrays = sorted({r.array_job_id for r in report.submitted})
    target = "local SLURM cluster (jobs held)" if real else "stub sbatch/sacct"
    print(f"bench_matrix: {len(m.cells)} cells, {len(arrays)} job arrays, submitted to {target}")
    print(f"  load + validate + expand : {t_load:6.2f} s")
    print(f"  plan without param counts: {t_plan_fast:6.2f} s   (expansion, status, job scripts)")
    print(
        f"  plan with param counts   : {t_plan:6.2f} s   ({counted} cells counted; the first count imports torch/transformers/peft)"
    )
    print(
        f"  submit (arrays + ledgers): {t_submit:6.2f} s   ({len(report.submitted)} cells, errors: {report.errors or 'none'})"
    )
    print(
        f"  status (1 sacct call)    : {t_status:6.2f} s   ({len(st.scheduler_calls)} scheduler call(s)): {st.counts()}"
    )
    print(f"  submit again (no-op)     : {t_again:6.2f} s   ({len(again.submitted)} submitted)")
    ok = t_plan_fast + t_submit < 10 and t_status < 10
    print(
        f"  target plan+submit < 10 s and status < 10 s: {'met' if ok else 'MISSED'}"
        f" (plan without counts + submit = {t_plan_fast + t_submit:.2f} s; with counts {t_plan + t_submit:.2f} s)"
    )
    if real and arrays:
        subprocess.run(["scancel", *arrays], check=False, timeout=60)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"  kept {root}")


if __name__ == "__main__":
    main()
