"""GPU check (`make gpu-check`): one short LoRA cell with the NVML sampler at 0.1 s.

Run it on a machine with an NVIDIA GPU (under 5 minutes). It exercises the real
paths that CPU tests cannot: CUDA placement, bf16 autocast, the torch allocator's
per-phase peaks, QLoRA's 4-bit base with paged 8-bit AdamW, and NVML telemetry.
It prints the device name, sampled utilization, peak memory next to torch's
reserved peak, energy, and the largest sampling gap, and exits non-zero if
utilization or energy is zero, or if a gap exceeds twice the interval.

    python scripts/gpu_check.py [--model small-llama] [--method lora] [--steps 150] [--collect DIR]

The default model, ``small-llama``, is built from its config (SmolLM2-135M's
shape, random weights), so the check needs no download and no staged weights;
``--model smollm2-135m`` runs the real pretrained model where it is staged.
``--collect DIR`` copies each cell's result.json, telemetry.csv and timeline.png
there, flat (``<method>-result.json`` ...), for a machine whose files come back
from one folder (scripts/device/gpu-check.sh).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

INTERVAL_S = 0.1


def _num(value: float | None, unit: str, scale: float = 1.0, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value / scale:.{digits}f} {unit}"


def _gib(value: float | None) -> str:
    return _num(value, "GiB", 2**30, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small-llama")
    parser.add_argument("--method", action="append", help="repeatable; default: lora and qlora")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--output", default=None, help="cell folders (default: a temporary folder)")
    parser.add_argument("--collect", default=None, help="copy each cell's result, CSV and plot here, flat")
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="run without a CUDA device (tests rehearse the script with a stand-in NVML module)",
    )
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.rehearse:
        print("gpu-check: no CUDA device visible; run this on a GPU machine", file=sys.stderr)
        return 2
    from harness.cell import run_cell
    from harness.config import CellConfig
    from harness.environment import package_versions

    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device (rehearsal)"
    print(
        f"gpu-check: {accelerator}, CUDA {torch.version.cuda}, "
        + ", ".join(f"{k} {v}" for k, v in package_versions().items())
    )

    root = Path(args.output or tempfile.mkdtemp(prefix="gpu-check-"))
    failures: list[str] = []
    for method in args.method or ["lora", "qlora"]:
        config = CellConfig(
            model=args.model,
            method=method,
            task="emotion",
            output_dir=root / method,
            train={"max_steps": args.steps, "batch_size": 64, "progress_bar": False, "log_every": 10},
            data={"max_train_samples": 64 * args.steps, "max_eval_samples": 256, "max_source_tokens": 128},
            tracking={"enabled": False},
            telemetry={"enabled": True, "backend": "nvml", "interval_s": INTERVAL_S},
        )
        result = run_cell(config)
        tele = result.telemetry
        gpu_train = (tele.get("phases") or {}).get("train", {})
        gpu_all = (tele.get("phases") or {}).get("all", {})
        torch_train = result.efficiency.phases.get("train")
        device = (tele.get("devices") or [{}])[0]
        print(f"\n== {args.model} / {method}: {result.status} {result.error or ''}")
        print(f"device            {device.get('name')} ({device.get('uuid')}), driver {tele.get('driver_version')}")
        print(
            f"backend           {tele.get('backend')}; unavailable fields: {tele.get('unavailable_fields')}; "
            f"errors: {tele.get('error') or tele.get('nvml_unavailable_reason') or tele.get('field_errors') or 'none'}"
        )
        print(
            f"util train        kernel-active mean {_num(gpu_train.get('util_mean'), '%')}, "
            f"p95 {_num(gpu_train.get('util_p95'), '%')}, idle share {_num(gpu_train.get('idle_share'), '', digits=2)}"
        )
        print(
            f"peak memory train NVML process {_gib(gpu_train.get('proc_mem_peak_bytes'))}, "
            f"device {_gib(gpu_train.get('mem_used_peak_bytes'))}; torch reserved "
            f"{_gib(torch_train.peak_reserved_bytes if torch_train else None)}, "
            f"allocated {_gib(torch_train.peak_allocated_bytes if torch_train else None)}"
        )
        print(
            f"power train       mean {_num(gpu_train.get('power_mean_w'), 'W')}, "
            f"peak {_num(gpu_train.get('power_peak_w'), 'W')}"
        )
        print(f"energy train      {_num(gpu_train.get('energy_j'), 'J')} ({gpu_train.get('energy_source')})")
        print(
            f"largest gap       {_num(gpu_all.get('max_gap_s'), 'ms', 1e-3)} over {gpu_all.get('sample_count')} "
            f"samples (interval {INTERVAL_S * 1e3:.0f} ms)"
        )
        print(
            f"throughput        {_num(result.efficiency.train_samples_per_s, 'samples/s')}; "
            f"accuracy {result.metrics.get('accuracy')}, macro F1 {result.metrics.get('f1_macro')}"
        )
        if args.collect:
            collect = Path(args.collect)
            collect.mkdir(parents=True, exist_ok=True)
            for name in ("result.json", "telemetry.csv", "timeline.png"):
                if (root / method / name).is_file():
                    shutil.copy(root / method / name, collect / f"{method}-{name}")
        if result.status != "success":
            failures.append(f"{method}: cell {result.status}")
        if tele.get("backend") != "nvml":
            failures.append(f"{method}: NVML was not used ({tele.get('nvml_unavailable_reason') or tele.get('error')})")
        if not gpu_train.get("util_mean"):
            failures.append(f"{method}: utilization is zero")
        if not gpu_train.get("energy_j"):
            failures.append(f"{method}: energy is zero")
        gap = gpu_all.get("max_gap_s") or 0.0
        if gap > 2 * INTERVAL_S:
            failures.append(f"{method}: sampling gap {gap:.3f} s exceeds twice the interval")
    print("\n" + ("gpu-check: OK" if not failures else "gpu-check: FAILED\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
