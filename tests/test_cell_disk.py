"""A read-only or full disk: one line before anything is written, or a final result that says so.

Each case runs the real CLI inside a private mount namespace (``unshare -Urm``) on a small
tmpfs, so nothing on the machine is touched; skipped where user namespaces are not allowed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CELL = [
    "run",
    "--local",
    "--model",
    "tiny-bert",
    "--method",
    "lora",
    "--task",
    "emotion",
    "--max-steps",
    "3",
    "--set",
    "data.max_train_samples=16",
    "--set",
    "data.max_eval_samples=8",
    "--no-tracking",
    "--set",
    "train.progress_bar=false",
]
# mount a 8 MiB tmpfs on $1; "ro" remounts it read-only, "full" leaves the cell's 1 MiB
# space reserve plus 40 KiB free; then run the rest of the arguments there
SETUP = r"""
root=$1 mode=$2; shift 2
mount -t tmpfs -o size=8m tmpfs "$root" || exit 97
if [ "$mode" = ro ]; then mount -o remount,ro "$root" || exit 97; fi
if [ "$mode" = full ]; then
  avail=$(df --output=avail -B1 "$root" | tail -1)
  fallocate -l $((avail - (1 << 20) - 40 * 1024)) "$root/filler" || exit 97
fi
cd "$root" && "$@"
rc=$?
[ "$mode" = ro ] || cp -a "$root/cell" "$root.after" 2>/dev/null
exit $rc
"""


def in_namespace(tmp_path: Path, mode: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    root = tmp_path / "disk"
    root.mkdir()
    done = subprocess.run(
        ["unshare", "-Urm", "bash", "-c", SETUP, "setup", str(root), mode, sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    if done.returncode == 97 or "unshare failed" in done.stderr:
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()[:200]}")
    return done


def test_read_only_output_is_one_line_before_anything(tmp_path: Path) -> None:
    done = in_namespace(tmp_path, "ro", CELL + ["--output", str(tmp_path / "disk" / "cell")])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write there (Read-only file system)" in lines[0], done.stderr


def test_read_only_matrix_output_submits_nothing(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        f"name: ro\noutput_dir: {tmp_path / 'disk' / 'out'}\nexecutor: {{kind: local}}\n"
        "models: [tiny-bert]\nmethods: [lora]\ntasks: [emotion]\ndefaults: {train: {max_steps: 1}}\n"
    )
    done = in_namespace(tmp_path, "ro", ["matrix", str(matrix)])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("harness: error: output folder")
    assert "Read-only file system" in done.stderr and "Traceback" not in done.stderr


def test_full_disk_ends_the_cell_failed_with_nothing_stray(tmp_path: Path) -> None:
    done = in_namespace(
        tmp_path, "full", CELL + ["--set", "telemetry.interval_s=0.05", "--output", str(tmp_path / "disk" / "cell")]
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, done.stderr
    assert "No space left on device" in done.stdout
    after = tmp_path / "disk.after"
    result = json.loads((after / "result.json").read_text())
    assert result["status"] == "failed" and "No space left on device" in result["error"]
    names = [p.name for p in after.rglob("*")]
    assert not [n for n in names if n.endswith((".tmp", ".partial"))], names
    assert ".space-reserve" not in names
    assert not (after / "timeline.png").exists() or (after / "timeline.png").stat().st_size > 0
