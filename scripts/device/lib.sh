# Shared by the device scripts (sourced): install the carried wheels beside the image's packages.
# Sets $out (the folder that comes back, $OUT there) and exports PYTHONPATH & co; exits 3 when
# the wheels are missing or do not install.
device_setup() {
  local default_out=$1
  out=${OUT:-$default_out}
  local site=/tmp/harness-site
  mkdir -p "$out"
  ls .whl/*.whl >/dev/null 2>&1 || { echo "$0: no wheels in .whl/ (make device-wheels, then carry .whl)" >&2; exit 3; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl ||
    exit 3
  export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HARNESS_CACHE=/tmp/harness-cache
}
