"""Forgetting, as peft's method_comparison/MetaMathQA defines it (``data.forgetting``).

The mean per-token cross-entropy (nats) of the model on a fixed general-text sample, pooled over
every scored token of every article (summed losses / tokens, not a mean of per-article means),
each article truncated to ``max_tokens``, in inference mode, padding never scored (peft #2986),
logits[t] against token t + 1 (peft #3419). Measured twice: ``before`` on the base model (a peft
model with its adapter disabled, as peft's ``model.disable_adapter()``; a model trained whole,
before training) and ``after`` on the trained model. ``forgetting = after - before``; lower is
better. The head's entry (harness.heads ``text_loss``) computes a batch's loss; a head without
one (classification) records why instead of a number.

Samples: ``wikitext-103-test`` (bundled, harness/data/forgetting/: the 60 articles of the
WikiText test split, CC BY-SA 3.0, see harness/data/SOURCES.md), ``finewiki`` (peft's own: the first
rows of the Hub's ``HuggingFaceFW/finewiki`` train split, streamed; needs the Hub), or a local
.jsonl ("text" per line) / .txt (one article per line) file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import ForgettingConfig
from harness.errors import ConfigError
from harness.heads import HEADS

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "forgetting"
FINEWIKI = "finewiki"
FINEWIKI_HUB_ID = "HuggingFaceFW/finewiki"  # peft's sample (data.py L112-117): split train, field text
# bundled samples: name -> file under SAMPLE_DIR
BUNDLED = {"wikitext-103-test": "wikitext-103-test.jsonl"}
FILE_SUFFIXES = (".jsonl", ".txt")


def _valid() -> str:
    return ", ".join([*BUNDLED, FINEWIKI]) + f", or a path to a {'/'.join(FILE_SUFFIXES)} file"


def check_sample(setting: ForgettingConfig) -> None:
    """Refuse, in one line, a sample that cannot be read: no torch, nothing loaded."""
    name = setting.sample
    if name in BUNDLED:
        return
    if name == FINEWIKI:
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            raise ConfigError(
                f"data.forgetting.sample {name!r} streams {FINEWIKI_HUB_ID} from the Hub, but HF_HUB_OFFLINE "
                f"is set; valid offline: {', '.join(BUNDLED)}, or a local file"
            )
        return
    path = Path(name).expanduser()
    if path.suffix not in FILE_SUFFIXES or not path.is_file():
        raise ConfigError(f"data.forgetting.sample {name!r}: no such sample or file; valid: {_valid()}")


@dataclass(frozen=True)
class Sample:
    """The articles a cell scores, and what they are (result.json's ``forgetting`` record)."""

    name: str  # as set: a bundled name, finewiki, or a path
    source: str  # "sha256:<hex>" of the local file, or "hf:<dataset id>" for the Hub
    texts: list[str]


def load_sample(setting: ForgettingConfig) -> Sample:
    """The first ``setting.articles`` non-empty articles of the sample (fewer when it has fewer)."""
    check_sample(setting)
    name, count = setting.sample, setting.articles
    if name == FINEWIKI:
        from datasets import load_dataset

        # as peft: streamed, so only the first rows are read (no config name, no revision)
        rows = load_dataset(FINEWIKI_HUB_ID, split="train", streaming=True).take(count)
        return Sample(name, f"hf:{FINEWIKI_HUB_ID}", [row["text"] for row in rows if row["text"]])
    path = SAMPLE_DIR / BUNDLED[name] if name in BUNDLED else Path(name).expanduser()
    raw = path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    if path.suffix == ".jsonl":
        texts = [json.loads(line)["text"] for line in lines if line.strip()]
    else:
        texts = lines
    texts = [text for text in texts if text.strip()][:count]
    return Sample(name, f"sha256:{hashlib.sha256(raw).hexdigest()}", texts)


@contextlib.contextmanager
def base_model(model: Any) -> Iterator[None]:
    """The base model's behaviour: a peft model's adapter disabled (peft's test,
    ``hasattr(model, "peft_config")``); a model without one is its own base."""
    context = model.disable_adapter() if hasattr(model, "peft_config") else contextlib.nullcontext()
    with context:
        yield


def mean_token_loss(
    model: Any, tokenizer: Any, head: str, texts: list[str], *, max_tokens: int, batch_size: int, device: Any
) -> tuple[float, int]:
    """(mean per-token cross-entropy pooled over all texts, tokens scored), in eval and inference
    mode; the model's train/eval mode is restored after. peft batches by the training batch size
    so that this pass does not raise the memory peak; so does the caller."""
    import torch

    text_loss = HEADS[head].text_loss
    if text_loss is None:
        raise ValueError(f"{HEADS[head].no_text_loss}: no language-model loss")
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                loss, count = text_loss(model, tokenizer, texts[start : start + batch_size], max_tokens, device)
                total, tokens = total + loss, tokens + count
    finally:
        model.train(was_training)
    return (total / tokens if tokens else float("nan")), tokens
