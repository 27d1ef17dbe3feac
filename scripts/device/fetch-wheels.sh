#!/usr/bin/env bash
# Download the wheels of scripts/device/wheels.txt into .whl/ for the GPU machine (`make device-wheels`).
#
# That machine reaches no package index, so what a cell needs beyond its image travels as wheels
# (device tool: run(..., carry=[".whl"])). Versions: constraints.txt, else the project's .venv.
# bitsandbytes ships kernels for every CUDA and ROCm release (43 MB); only those for the image's
# CUDA major (BNB_CUDA_MAJOR, default 13: torch cu130 there) and the CPU are kept, so that the
# working tree stays under the tool's 64 MiB.
#
#   PYVER=3.12 BNB_CUDA_MAJOR=13 bash scripts/device/fetch-wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

PYVER=${PYVER:-3.12}
BNB_CUDA_MAJOR=${BNB_CUDA_MAJOR:-13}
PY=${PY:-.venv/bin/python}
dest=.whl
[ -x "$PY" ] || { echo "fetch-wheels: $PY not found; run 'make install' first" >&2; exit 2; }

pins=()
while read -r name; do
  case "$name" in ''|'#'*) continue ;; esac
  pin=$(grep -iE "^${name}==" constraints.txt | head -n1 || true)
  if [ -z "$pin" ]; then
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") ||
      { echo "fetch-wheels: $name is neither in constraints.txt nor installed in $PY" >&2; exit 2; }
    pin="$name==$version"
  fi
  pins+=("$pin")
done < scripts/device/wheels.txt

rm -rf "$dest" && mkdir -p "$dest"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$dest" "${pins[@]}"

for wheel in "$dest"/bitsandbytes-*.whl; do
  [ -e "$wheel" ] || continue
  # list the kernels of other CUDA majors, of ROCm and of XPU, then drop them from the archive
  mapfile -t drop < <(unzip -Z1 "$wheel" | grep -E '^bitsandbytes/libbitsandbytes_(cuda|rocm|xpu)[0-9]+\.so$' |
    grep -vE "_cuda${BNB_CUDA_MAJOR}[0-9]\.so$" || true)
  [ "${#drop[@]}" -eq 0 ] || zip -q -d "$wheel" "${drop[@]}"
done

echo "fetch-wheels: ${#pins[@]} wheels for Python $PYVER in $dest/ ($(du -sh "$dest" | cut -f1)):"
ls -1 "$dest"
