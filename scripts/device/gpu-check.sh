#!/usr/bin/env bash
# The GPU machine's side of `make gpu-check`, for a machine whose image already holds a CUDA torch
# and reaches no package index (the device tool). Prepare here, then run there in one call:
#
#   make device-wheels                        # here: .whl/ (about 30 MB)
#   run(command="bash scripts/device/gpu-check.sh", carry=[".whl"], timeout_s=420)
#
# It installs the carried wheels over the image's packages (into a folder first on PYTHONPATH, so the
# image is untouched), runs scripts/gpu_check.py, and leaves in $OUT the log and each cell's
# result.json, telemetry.csv and timeline.png (7 files: the tool brings back at most 8).
# Exit status: gpu_check.py's (0 ok, 1 a check failed, 2 no CUDA device), 3 when the wheels do not install.
set -uo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=scripts/device/lib.sh
source scripts/device/lib.sh
device_setup /tmp/gpu-check-out
{
  nvidia-smi --query-gpu=name,uuid,driver_version,memory.total,power.draw,power.limit --format=csv || true
  python3 scripts/gpu_check.py --collect "$out" "$@"
} 2>&1 | tee "$out/gpu-check.log"
exit "${PIPESTATUS[0]}"
