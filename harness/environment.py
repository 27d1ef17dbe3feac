"""The environment block of a result: what ran, where, on which versions."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "mlflow",
    "submitit",
    "scikit-learn",
    "rouge-score",
    "nvidia-ml-py",
)
SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_PARTITION",
    "SLURM_RESTART_COUNT",
    "SLURM_JOB_NODELIST",
)


def git_commit() -> str | None:
    if os.environ.get("HARNESS_GIT_COMMIT"):  # set in container images, which carry no .git
        return os.environ["HARNESS_GIT_COMMIT"]
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty() -> bool | None:
    """Whether the harness's tracked files differ from its commit (None: not known, e.g. in a
    container image, which carries no .git; $HARNESS_GIT_DIRTY says so there if set)."""
    if os.environ.get("HARNESS_GIT_DIRTY") is not None:
        return os.environ["HARNESS_GIT_DIRTY"].strip().lower() in ("1", "true", "yes")
    if os.environ.get("HARNESS_GIT_COMMIT"):
        return None
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def accelerator_info() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        return {
            "type": "cuda",
            "device_count": torch.cuda.device_count(),
            "name": torch.cuda.get_device_name(0),
            "cuda": torch.version.cuda,
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
    return {
        "type": "cpu",
        "name": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide a result (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "packages": package_versions(),
        "accelerator": accelerator_info(),
        "slurm": {k: os.environ[k] for k in SLURM_VARS if k in os.environ},
        "container": {
            k.removeprefix("HARNESS_CONTAINER_").lower(): v
            for k, v in os.environ.items()
            if k.startswith("HARNESS_CONTAINER_")
        },
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
    }
