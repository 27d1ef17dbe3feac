#!/usr/bin/env bash
# The GPU machine's whole check in one call (under 8 minutes on an H200): the telemetry check,
# then memory and speed of LoRA, QLoRA and full fine-tuning on Llama-3.2-3B's shape.
#
#   make device-wheels                        # here: .whl/
#   run(command="bash scripts/device/gpu-bench.sh", carry=[".whl"], timeout_s=590)
#
# Leaves in $OUT (the tool brings back at most 8 files, so the runs share one JSON document):
#   gpu-check.log, lora-result.json, qlora-result.json   (scripts/gpu_check.py, telemetry)
#   gpu-bench.json, gpu-bench.log                          (scripts/gpu_bench.py, every run + comparisons)
# Commit gpu-bench.json as bench/results/gpu-<device>-<date>.json.
# Exit status: 0 both passed, 1 a check or a run failed, 2 no CUDA device, 3 the wheels did not install.
set -uo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=scripts/device/lib.sh
source scripts/device/lib.sh
device_setup /tmp/gpu-bench-out

collect=$(mktemp -d)
{
  nvidia-smi --query-gpu=name,uuid,driver_version,memory.total,power.draw,power.limit --format=csv || true
  timeout 200 python3 scripts/gpu_check.py --steps 100 --collect "$collect"
} 2>&1 | tee "$out/gpu-check.log"
check=${PIPESTATUS[0]}
cp "$collect"/lora-result.json "$collect"/qlora-result.json "$out"/ 2>/dev/null

timeout 330 python3 scripts/gpu_bench.py --out "$out/gpu-bench.json" --steps "${BENCH_STEPS:-100}" "$@" 2>&1 |
  tee "$out/gpu-bench.log"
bench=${PIPESTATUS[0]}
echo "gpu-check exit $check, gpu-bench exit $bench"
[ "$check" -eq 2 ] || [ "$bench" -eq 2 ] && exit 2
exit $(( check != 0 || bench != 0 ))
