"""Model presets: tiny models are deterministic, real packaged models load offline, and the
study's models are counted exactly on the meta device from the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.errors import ConfigError
from harness.models import build_meta_model, count_module_parameters, load_model, package_dir, resolve_model

# Published sizes: FLAN-T5-XL 2.85B (untied lm_head), Llama-3.2-3B 3.21B (tied), BERT-base 110M.
STUDY_COUNTS = [
    ("flan-t5-xl", "seq2seq", 2_849_757_184),
    ("llama-3.2-3b", "causal", 3_212_749_824),
    ("bert-base-uncased", "seqcls", 109_482_240 + 768 * 6 + 6),
]


@pytest.mark.parametrize(("name", "head", "expected"), STUDY_COUNTS)
def test_study_models_count_exactly_offline(name: str, head: str, expected: int) -> None:
    model = build_meta_model(resolve_model(name), head, num_labels=6)
    assert count_module_parameters(model) == (expected, expected)
    assert next(model.parameters()).device.type == "meta"


@pytest.mark.parametrize(("name", "head"), [("tiny-t5", "seq2seq"), ("tiny-llama", "causal"), ("tiny-bert", "seqcls")])
def test_tiny_presets_are_deterministic(name: str, head: str) -> None:
    torch.manual_seed(0)
    first = load_model(resolve_model(name), head, num_labels=6).model.state_dict()
    torch.manual_seed(0)
    second = load_model(resolve_model(name), head, num_labels=6).model.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_minilm_is_a_real_pretrained_encoder() -> None:
    loaded = load_model(resolve_model("minilm-l6"), "seqcls", num_labels=6)
    assert count_module_parameters(loaded.model)[1] == 22_715_526
    ids = loaded.tokenizer("i feel wonderful today")["input_ids"]
    assert loaded.tokenizer.convert_ids_to_tokens(ids)[1:4] == ["i", "feel", "wonderful"]


@pytest.mark.skipif(
    package_dir(resolve_model("smollm2-135m")) is None, reason="run `harness prefetch --model smollm2-135m`"
)
def test_smollm2_from_gguf_generates_text() -> None:
    loaded = load_model(resolve_model("smollm2-135m"), "causal")
    assert loaded.model.config.model_type == "llama"
    assert 134_000_000 < count_module_parameters(loaded.model)[1] < 136_000_000
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt")
    out = loaded.model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in loaded.tokenizer.decode(out[0])


def test_qlora_base_is_4bit_and_counted_at_logical_size() -> None:
    plain = load_model(resolve_model("tiny-llama"), "causal")
    quantized = load_model(resolve_model("tiny-llama"), "causal", quantize_4bit=True)
    assert quantized.quantized_4bit
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in quantized.model.modules())
    assert count_module_parameters(quantized.model)[1] == count_module_parameters(plain.model)[1]


@pytest.mark.parametrize(("name", "message"), [("nope", "unknown model 'nope'"), ("./missing-dir/x", "unknown model")])
def test_unknown_models_are_refused(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_model(name)


def test_hub_ids_and_local_directories_resolve(tmp_path) -> None:
    assert resolve_model("google/flan-t5-small").family == "t5"
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    spec = resolve_model(str(tmp_path))
    assert spec.family == "llama" and spec.origin == "local"


@pytest.mark.parametrize("family", ["t5", "llama", "bert"])
def test_a_family_entry_builds_its_tiny_model(family: str, tmp_path, monkeypatch) -> None:
    """What differs by family is its registry entry: the tiny preset of each family is built afresh
    (an empty cache) with the entry's config class, its model class's weights and its special-token
    fields, and has the very weights of the copy in the usual cache."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    from harness.models import FAMILIES, PRESETS, materialise
    from harness.models.tokenizer import SPECIAL_TOKENS
    from harness.names import CACHE_ENV

    entry = FAMILIES[family]
    (preset,) = [spec for spec in PRESETS.values() if spec.family == family and spec.name.startswith("tiny-")]
    usual = Path(materialise(preset))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    folder = Path(materialise(preset))
    assert folder.is_relative_to(tmp_path)
    config, tokenizer = AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert type(config).__name__ == entry.tiny_config_class and config.architectures == [entry.tiny_model_class]
    for key, token in {"pad_token_id": "pad", "eos_token_id": "eos", **entry.tiny_token_fields}.items():
        assert getattr(config, key) == tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[token])
    assert all(getattr(config, key) == value for key, value in preset.tiny_config.items())
    fresh, cached = load_file(folder / "model.safetensors"), load_file(usual / "model.safetensors")
    assert fresh.keys() == cached.keys() and all(torch.equal(fresh[k], cached[k]) for k in fresh)


def test_a_family_entry_names_its_model_types_and_hub_ids(tmp_path) -> None:
    from harness.models.registry import FAMILIES, HUB_ID_DEFAULT_FAMILY

    for family in FAMILIES.values():
        for model_type in family.model_types:
            (tmp_path / model_type).mkdir()
            (tmp_path / model_type / "config.json").write_text(f'{{"model_type": "{model_type}"}}')
            assert resolve_model(str(tmp_path / model_type)).family == family.name
        for word in family.hub_id_words:
            assert resolve_model(f"someone/my-{word}-model").family == family.name
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2").family == "bert"
    assert resolve_model("Qwen/Qwen2.5-0.5B").family == HUB_ID_DEFAULT_FAMILY == "llama"
    with pytest.raises(ConfigError, match="unsupported model_type 'gpt2'; supported: bert, deberta-v2"):
        (tmp_path / "gpt2").mkdir()
        (tmp_path / "gpt2" / "config.json").write_text('{"model_type": "gpt2"}')
        resolve_model(str(tmp_path / "gpt2"))
