"""Phase ``save``: the trained weights into the cell folder, recorded in the result."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from harness.methods.registry import MethodSpec
from harness.result import Result

ADAPTER_DIR = "adapter"  # a PEFT method's adapter
MODEL_DIR = "model"  # full fine-tuning: the whole model and its tokenizer


def save(model: Any, tokenizer: Any, method: MethodSpec, cell_dir: Path, result: Result) -> None:
    """The adapter (PEFT methods) or the whole model (full fine-tuning); its size and place in
    the result."""
    full = method.peft_type is None
    target = cell_dir / (MODEL_DIR if full else ADAPTER_DIR)
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    if full:
        tokenizer.save_pretrained(target)
    result.artifacts[target.name] = target.name
    result.efficiency.adapter_bytes = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
