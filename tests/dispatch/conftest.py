"""Fixtures: a PATH without sbatch, stub SLURM commands (helpers live in dispatch_helpers.py)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # slurm_cluster helper (tests/ is not a package)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # dispatch_helpers

SLURM_COMMANDS = ("sbatch", "srun", "sacct", "squeue", "scancel", "scontrol", "sinfo", "salloc")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HARNESS_EXECUTOR", raising=False)


@pytest.fixture
def no_sbatch_path(tmp_path, monkeypatch) -> str:
    """PATH with every command of the current PATH except SLURM's (as on a laptop)."""
    bin_dir = tmp_path / "bin-no-slurm"
    bin_dir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name in SLURM_COMMANDS or (bin_dir / entry.name).exists():
                continue
            try:
                (bin_dir / entry.name).symlink_to(entry.path)
            except OSError:
                pass
    monkeypatch.setenv("PATH", str(bin_dir))
    return str(bin_dir)


STUB = r"""#!/usr/bin/env bash
# stub {name}: records its call, answers from files in $STUB_DIR
echo "{name} $*" >> "$STUB_DIR/calls.log"
case "{name}" in
  sbatch)
    if [ -f "$STUB_DIR/sbatch.fail" ]; then cat "$STUB_DIR/sbatch.fail" >&2; exit 1; fi
    n=$(cat "$STUB_DIR/next_id" 2>/dev/null || echo 1000)
    echo $((n + 1)) > "$STUB_DIR/next_id"
    cp "$1" "$STUB_DIR/sbatch-$n.sh"
    echo "Submitted batch job $n" ;;
  sacct) cat "$STUB_DIR/sacct.out" 2>/dev/null; true ;;
  squeue) cat "$STUB_DIR/squeue.out" 2>/dev/null; true ;;
  *) true ;;
esac
"""


@pytest.fixture
def stub_slurm(tmp_path, monkeypatch) -> Path:
    """Stub sbatch/srun/sacct/squeue on the PATH: submissions are recorded, never run."""
    stub_dir = tmp_path / "stub-slurm"
    stub_dir.mkdir()
    for name in ("sbatch", "srun", "sacct", "squeue", "scancel", "scontrol"):
        path = stub_dir / name
        path.write_text(STUB.replace("{name}", name))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("STUB_DIR", str(stub_dir))
    monkeypatch.setenv("PATH", f"{stub_dir}{os.pathsep}{os.environ['PATH']}")
    return stub_dir
