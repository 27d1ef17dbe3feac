"""scripts/gpu_check.py, rehearsed on CPU with a stand-in NVML module, so the GPU machine's scarce
minutes are not spent finding a typo in it; and its refusal without a CUDA device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def run(*args: str, stand_in: bool, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = [str(Path(__file__).parent / "stand_in_nvml")] if stand_in else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([*path, str(ROOT)])}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_refuses_without_a_cuda_device(tmp_path: Path) -> None:
    proc = run(stand_in=False, cwd=tmp_path)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


def test_rehearsal_reports_and_collects(tmp_path: Path) -> None:
    collect = tmp_path / "out"
    proc = run(
        "--rehearse", "--model", "tiny-llama", "--steps", "4", "--collect", str(collect), stand_in=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "gpu-check: OK" in out
    assert out.count("device            Stand-in GPU (GPU-00000000-stand-in), driver 0.0-stand-in") == 2
    assert "kernel-active mean 80.0 %" in out and "mean 250.0 W" in out and "device 2.00 GiB" in out
    assert sorted(p.name for p in collect.iterdir()) == [
        f"{m}-{f}" for m in ("lora", "qlora") for f in ("result.json", "telemetry.csv", "timeline.png")
    ]
    result = json.loads((collect / "lora-result.json").read_text())
    train = result["telemetry"]["phases"]["train"]
    # energy from counter deltas at 250 W matches power x time within the sampling granularity
    assert train["energy_source"] == "counter"
    assert abs(train["energy_j"] - 250.0 * train["duration_s"]) < 250.0 * 0.5


def test_rehearsal_fails_when_nvml_is_missing(tmp_path: Path) -> None:
    proc = run("--rehearse", "--model", "tiny-llama", "--steps", "2", "--method", "lora", stand_in=False, cwd=tmp_path)
    assert proc.returncode == 1
    assert "gpu-check: FAILED" in proc.stdout and "utilization is zero" in proc.stdout
