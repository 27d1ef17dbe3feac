"""Training checkpoints from which a run resumes exactly.

A checkpoint holds what changes during training: the trainable weights (the
adapter, or everything for full fine-tuning), optimizer and scheduler state, the
step and data position, RNG states and method state (AdaLoRA's importance scores).
It is written to a temporary folder and renamed, so a kill mid-write leaves the
previous checkpoint intact; only the newest ``KEEP`` are kept.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

KEEP = 2
PREFIX = "step-"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    root: Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    progress: dict[str, Any],
    rng: dict[str, Any],
    extra: dict[str, Any],
    weights: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """``weights``/``optimizer_state``: gathered already (FSDP's full state dicts); else read here."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    torch.save(weights if weights is not None else trainable_state(model), tmp / "trainable.pt")
    torch.save(
        {
            "optimizer": optimizer_state if optimizer_state is not None else optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "extra": extra,
        },
        tmp / "state.pt",
    )
    (tmp / "progress.json").write_text(json.dumps(progress, indent=2))
    target = root / f"{PREFIX}{step:08d}"
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    for old in sorted(root.glob(f"{PREFIX}*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(root: Path) -> Path | None:
    found = sorted(p for p in root.glob(f"{PREFIX}*") if (p / "progress.json").is_file())
    return found[-1] if found else None


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(trainable weights, optimizer/scheduler/rng/extra state, progress) as saved."""
    weights = torch.load(path / "trainable.pt", map_location="cpu", weights_only=True)
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    return weights, state, json.loads((path / "progress.json").read_text())


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> tuple[dict, dict, dict]:
    """Restore weights, optimizer and scheduler; return (progress, rng, extra)."""
    weights = torch.load(path / "trainable.pt", map_location="cpu", weights_only=True)
    missing_trainable = {n for n, p in model.named_parameters() if p.requires_grad} - set(weights)
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys or missing_trainable:
        raise RuntimeError(
            f"checkpoint {path} does not match this model (unexpected: {result.unexpected_keys[:3]}, "
            f"missing: {sorted(missing_trainable)[:3]})"
        )
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    progress = json.loads((path / "progress.json").read_text())
    return progress, state["rng"], state["extra"]
