"""GPU check (`make gpu-check`): one short LoRA cell with the NVML sampler at 0.1 s.

Run it on a machine with an NVIDIA GPU (under 5 minutes). It exercises the real
paths that CPU tests cannot: CUDA placement, bf16 autocast, the torch allocator's
per-phase peaks, QLoRA's 4-bit base with paged 8-bit AdamW, and NVML telemetry.
It prints the device name, sampled utilization, peak memory next to torch's
reserved peak, energy, and the largest sampling gap, and exits non-zero if
utilization or energy is zero, or if a gap exceeds twice the interval.

    python scripts/gpu_check.py [--model smollm2-135m] [--method lora] [--steps 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

INTERVAL_S = 0.1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", action="append", help="repeatable; default: lora and qlora")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device visible; run this on a GPU machine", file=sys.stderr)
        return 2
    from harness.cell import run_cell
    from harness.config import CellConfig

    root = Path(args.output or tempfile.mkdtemp(prefix="gpu-check-"))
    failures: list[str] = []
    for method in args.method or ["lora", "qlora"]:
        config = CellConfig(
            model=args.model, method=method, task="emotion", output_dir=root / method,
            train={"max_steps": args.steps, "batch_size": 32, "progress_bar": False, "log_every": 10},
            data={"max_train_samples": 32 * args.steps, "max_eval_samples": 256, "max_source_tokens": 128},
            tracking={"enabled": False}, telemetry={"enabled": True, "backend": "nvml", "interval_s": INTERVAL_S},
        )
        result = run_cell(config)
        tele = result.telemetry
        metrics = tele.get("metrics", {})
        train = result.efficiency.phases.get("train")
        device = (tele.get("devices") or [{}])[0]
        print(f"\n== {args.model} / {method}: {result.status} {result.error or ''}")
        print(f"device            {device.get('name')} ({device.get('uuid')})")
        print(f"backend           {tele.get('backend')}  unavailable fields: {tele.get('unavailable_fields')}")
        print(f"util train        mean {metrics.get('gpu/train/util_mean')} %  p95 {metrics.get('gpu/train/util_p95')} %")
        print(f"peak memory       NVML process {metrics.get('gpu/train/proc_mem_peak_bytes')} B, device "
              f"{metrics.get('gpu/train/mem_used_peak_bytes')} B; torch reserved "
              f"{train.peak_reserved_bytes if train else None} B, allocated {train.peak_allocated_bytes if train else None} B")
        print(f"energy train      {metrics.get('gpu/train/energy_j')} J ({tele.get('energy_source')})")
        print(f"largest gap       {metrics.get('gpu/all/max_gap_s')} s (interval {INTERVAL_S} s)")
        print(f"throughput        {result.efficiency.train_samples_per_s} samples/s, metrics {result.metrics}")
        if result.status != "success":
            failures.append(f"{method}: cell {result.status}")
        if not metrics.get("gpu/train/util_mean"):
            failures.append(f"{method}: utilization is zero")
        if not metrics.get("gpu/train/energy_j"):
            failures.append(f"{method}: energy is zero")
        gap = metrics.get("gpu/all/max_gap_s") or 0.0
        if gap > 2 * INTERVAL_S:
            failures.append(f"{method}: sampling gap {gap:.3f} s exceeds twice the interval")
    print("\n" + ("gpu-check: OK" if not failures else "gpu-check: FAILED\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
