"""A small BPE tokenizer trained on the bundled text, for the tiny presets.

Byte-level BPE encodes any text without unknown tokens; training on the bundled
emotion and BillSum files is deterministic, so every machine builds the same one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from harness.models.registry import cache_dir

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
VOCAB_SIZE = 4096
# T5's convention (pad 0, eos 1, unk 2) suits all three families.
SPECIAL_TOKENS = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>", "bos": "<s>"}
TOKENIZER_VERSION = 1


def _corpus() -> list[str]:
    lines: list[str] = []
    for path in (DATA_DIR / "emotion" / "train.jsonl", DATA_DIR / "billsum" / "train.jsonl"):
        for raw in path.read_text().splitlines():
            row = json.loads(raw)
            lines.append(row["text"])
            if "summary" in row:
                lines.append(row["summary"])
    return lines


def build_tiny_tokenizer() -> Any:
    """Train (once, then cached) and return a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    path = cache_dir() / "tokenizers" / f"tiny-bpe-{VOCAB_SIZE}-v{TOKENIZER_VERSION}.json"
    if not path.is_file():
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            special_tokens=list(SPECIAL_TOKENS.values()),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(_corpus(), trainer=trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
            handle.write(tokenizer.to_str())
        Path(handle.name).replace(path)
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        pad_token=SPECIAL_TOKENS["pad"],
        eos_token=SPECIAL_TOKENS["eos"],
        unk_token=SPECIAL_TOKENS["unk"],
        bos_token=SPECIAL_TOKENS["bos"],
        model_max_length=4096,
    )
