"""Training checkpoints from which a run resumes exactly.

A checkpoint holds what changes during training: the trainable weights (the
adapter, or everything for full fine-tuning), optimizer and scheduler state, the
step and data position, RNG states and method state (AdaLoRA's importance scores).
It is written to a temporary folder and renamed, so a kill mid-write leaves the
previous checkpoint intact; only the newest ``KEEP`` are kept.

A checkpoint that cannot be read back (a file missing, not what torch or JSON reads, not the
state it should hold: ``harness.result.CorruptState``) is renamed ``<name>.corrupt`` and the
run resumes from the one before it, else from the start: a resumed run is exact either way,
it only repeats some steps.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.jsonfile import write_json_atomic
from harness.result import CorruptState, move_aside, read_json_state

log = logging.getLogger(__name__)

KEEP = 2
PREFIX = "step-"
_NAME = re.compile(rf"{PREFIX}\d{{8}}")  # a checkpoint's folder (not a .tmp- one, nor one moved aside)
STATE_KEYS = ("optimizer", "scheduler", "rng", "extra")


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
    write_json_atomic(tmp / "progress.json", progress)
    target = root / f"{PREFIX}{step:08d}"
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    for old in _checkpoints(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _checkpoints(root: Path) -> list[Path]:
    """The checkpoint folders under ``root``, oldest first."""
    return sorted(p for p in root.glob(f"{PREFIX}*") if _NAME.fullmatch(p.name) and p.is_dir())


def latest_checkpoint(root: Path) -> Path | None:
    found = [p for p in _checkpoints(root) if (p / "progress.json").is_file()]
    return found[-1] if found else None


# what readable_checkpoint read, by folder: the resume that follows loads it from here, not twice
_read_ahead: dict[Path, tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]] = {}


def readable_checkpoint(root: Path) -> Path | None:
    """The newest checkpoint that reads back whole (:func:`read_checkpoint`), to resume from. One
    that does not is moved aside (``<name>.corrupt``) and the one before it is tried; None when
    none is left (the run starts from the beginning)."""
    for path in reversed([p for p in _checkpoints(root) if (p / "progress.json").is_file()]):
        try:
            _read_ahead[path] = _read(path)
        except CorruptState as error:
            try:
                log.warning("checkpoint %s: %s; moved aside to %s", path, error, move_aside(path).name)
            except OSError:  # another rank of the run moved it first
                log.warning("checkpoint %s: %s", path, error)
            continue
        return path
    return None


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(trainable weights, optimizer/scheduler/rng/extra state, progress) as saved; raises
    CorruptState naming the file that cannot be read back."""
    saved = _read_ahead.pop(path, None)
    return saved if saved is not None else _read(path)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    progress = read_json_state(path / "progress.json")
    if progress is None:
        raise CorruptState(path / "progress.json", "missing")
    _check_progress(path / "progress.json", progress)
    weights = _load(path / "trainable.pt", weights_only=True)
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in weights.items()):
        raise CorruptState(path / "trainable.pt", "not a mapping of names to tensors")
    state = _load(path / "state.pt", weights_only=False)
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise CorruptState(path / "state.pt", f"no {', '.join(missing)}")
    return weights, state, progress


# the fields of harness.train.loop.Progress, which is built from a progress.json as it is
COUNTS = ("step", "epoch", "batch_in_epoch", "samples", "real_tokens", "token_slots")
LOSS_LISTS = ("losses", "eval_losses")


def _check_progress(path: Path, progress: dict[str, Any]) -> None:
    """What the loop reads of a progress (harness.train.loop.Progress): its counts, and its
    losses as (step, loss) pairs."""
    if "step" not in progress or "losses" not in progress:
        raise CorruptState(path, "no step or no losses")
    unknown = sorted(set(progress) - {*COUNTS, *LOSS_LISTS})
    if unknown:  # Progress(**progress) would raise TypeError, and every retry (checkpoints kept) again
        raise CorruptState(path, f"unknown field {unknown[0][:40]!r}")
    for key in COUNTS:
        value = progress.get(key, 0)
        if type(value) is not int or value < 0:
            raise CorruptState(path, f"{key}: {str(value)[:20]!r} is not a count")
    for key in LOSS_LISTS:
        pairs = progress.get(key, [])
        if not isinstance(pairs, list) or not all(_is_pair(pair) for pair in pairs):
            raise CorruptState(path, f"{key}: not a list of (step, loss) pairs")


def _is_pair(pair: Any) -> bool:
    return (
        isinstance(pair, list)
        and len(pair) == 2
        and type(pair[0]) is int
        and isinstance(pair[1], (int, float))
        and not isinstance(pair[1], bool)
    )


def _load(path: Path, *, weights_only: bool) -> dict[Any, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise CorruptState(path, "missing") from None
    except Exception as error:  # noqa: BLE001 - whatever unpickling a damaged file raises
        raise CorruptState(path, f"torch cannot load it ({type(error).__name__}: {error})") from None
    if not isinstance(data, dict):
        raise CorruptState(path, f"a {type(data).__name__}, not a mapping")
    return data


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> tuple[dict, dict, dict]:
    """Restore weights, optimizer and scheduler; return (progress, rng, extra)."""
    weights, state, progress = read_checkpoint(path)
    missing_trainable = {n for n, p in model.named_parameters() if p.requires_grad} - set(weights)
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys or missing_trainable:
        raise RuntimeError(
            f"checkpoint {path} does not match this model (unexpected: {result.unexpected_keys[:3]}, "
            f"missing: {sorted(missing_trainable)[:3]})"
        )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return progress, state["rng"], state["extra"]
