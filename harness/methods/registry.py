"""Methods: every ``PeftType`` of the installed peft, the study's names, and what a method needs.

A method is a peft config class plus, where it needs one, a registry entry here:

- **Generated.** Each ``PeftType`` of the installed peft is a method under its lowercase
  name (``vera``, ``oft``, ``boft``, ``hra``, ...), with peft's own defaults. A new peft
  type becomes a method with no change here.
- **Declared.** The study's names (``qlora``, ``prefix``, ``ptuning_v2``, ``ptuning``,
  ``full``, ``zeroshot``), the variants of LoRA (``dora``, ``rslora``, ``lorafa``), and the
  peft types that need more than a config: per-step hooks (AdaLoRA's and AdaMSS's
  allocation), an optimizer (LoRA-FA), arguments from the model or tokenizer (trainable
  tokens' indices, adaption prompt's layers), or a refusal with its reason where a cell
  cannot run them (X-LoRA, Poly, multitask prompt tuning, CPT).

The names are read from peft's source without importing peft (milliseconds), so config
validation and ``harness plan`` stay fast; building a method imports peft.

The study's hyperparameters (ranks, targets, learning rates) live in ``jobs/thesis.yaml``;
the defaults here only make every method runnable out of the box.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from harness.errors import ConfigError, clip, shorten
from harness.heads import HEADS
from harness.methods import hooks
from harness.models.registry import FAMILIES

# When peft has no target modules for an architecture (a model type outside its tables),
# these are used; for T5, Llama and BERT peft's own defaults apply (they are the same).
ATTENTION_QV = {name: list(family.attention_qv) for name, family in FAMILIES.items()}


# the part a method plays in a report: the untrained reference each method's quality gain is
# measured against (and the Pareto plots' dashed line), or the baseline that train memory and
# energy are given relative to
ReportRole = Literal["reference", "efficiency_baseline"]


def _per_family(**values_by_key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {family: value}} -> {family: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, by_family in values_by_key.items():
        for family, value in by_family.items():
            out.setdefault(family, {})[key] = value
    return out


@dataclass(frozen=True)
class MethodSpec:
    name: str
    # the PeftType value ("LORA", "VERA", ...), None for full fine-tuning and zero-shot
    peft_type: str | None
    # None: 1e-2 for prompt learning (virtual tokens, prefixes), else 1e-3 (see build.default_learning_rate)
    learning_rate: float | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    # added only where peft has no default target modules for the architecture
    family_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    trains: bool = True
    quantize_4bit: bool = False
    hooks: hooks.MethodHooks = field(default_factory=hooks.MethodHooks)
    # why a cell cannot run this method: key "*" (anywhere), a family (t5, llama, bert) or a head
    # (seq2seq, causal, seqcls); checked at plan time
    refusals: dict[str, str] = field(default_factory=dict)
    description: str = ""
    generated: bool = False  # an entry made from a PeftType with nothing declared
    report_role: ReportRole | None = None  # exactly one declared entry plays each role
    title: str = ""  # how tables and plots name it in prose ("vs LoRA"); "": its name
    # why its training cannot stop at a rung and continue exactly from the checkpoint (successive
    # halving refuses it); "": it resumes exactly (tests/train/test_resume.py, test_rungs.py)
    cannot_resume: str = ""
    # why its saved weights, reloaded, may not score exactly as the model that was trained: a sweep's
    # stage 2 then retrains the first seed instead of reusing the stage-1 winner (harness.cell.reuse)
    reload_differs: str = ""

    @property
    def whole_model(self) -> bool:
        """Every weight trains (full fine-tuning): no adapter and no rank; what it saves is the model."""
        return self.peft_type is None and self.trains

    @property
    def resume_refusal(self) -> str | None:
        """Why a cell of this method cannot stop at a rung and continue (None: it can)."""
        if not self.trains:
            return "it does not train"
        return self.cannot_resume or None

    @property
    def shown_as(self) -> str:
        return self.title or self.name

    def refusal(self, family: str, head: str) -> str | None:
        """Why this method cannot run on a family's head, known without building anything."""
        declared = self.refusals.get("*") or self.refusals.get(family) or self.refusals.get(head)
        if declared:
            return declared
        if not self.trains and HEADS[head].class_labels:
            return (
                "a classification head is untrained (random) before fine-tuning, so zero-shot scores would be "
                "meaningless; use an encoder-decoder (text-to-text) model for zero-shot classification"
            )
        return None


_QV = _per_family(target_modules=ATTENTION_QV)
_LORA_STUDY = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05}
_NEEDS_TASK_IDS = (
    "needs a task id per example (it shares trained modules across several source tasks); a cell "
    "trains one task, and the harness's batches carry no task_ids"
)

DECLARED: tuple[MethodSpec, ...] = (
    MethodSpec(
        "lora",
        "LORA",
        1e-3,
        _LORA_STUDY,
        _QV,
        report_role="efficiency_baseline",
        title="LoRA",
        description="LoRA: low-rank updates of the attention projections",
    ),
    MethodSpec(
        "qlora",
        "LORA",
        1e-3,
        _LORA_STUDY,
        _QV,
        quantize_4bit=True,
        reload_differs="its 4-bit base is quantized anew when reloaded (bitsandbytes, GPU only): not verified exact",
        description="QLoRA: LoRA on a 4-bit NF4 base with double quantization",
    ),
    MethodSpec(
        "dora",
        "LORA",
        1e-3,
        {**_LORA_STUDY, "use_dora": True},
        _QV,
        description="DoRA: LoRA with a learned magnitude per output (weight-decomposed)",
    ),
    MethodSpec(
        "rslora",
        "LORA",
        1e-3,
        {**_LORA_STUDY, "use_rslora": True},
        _QV,
        description="rsLoRA: LoRA scaled by alpha/sqrt(r), stable at high ranks",
    ),
    MethodSpec(
        "lorafa",
        "LORA",
        1e-3,
        _LORA_STUDY,
        _QV,
        hooks=hooks.LORA_FA,
        description="LoRA-FA: LoRA with A frozen at init and B trained by the LoRA-FA optimizer",
    ),
    MethodSpec(
        "adalora",
        "ADALORA",
        1e-3,
        {"init_r": 12, "target_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "tinit": 0, "tfinal": 0, "deltaT": 1},
        _QV,
        hooks=hooks.ADALORA,
        reload_differs="its rank allocation is rebuilt from the saved rank pattern when reloaded: not verified exact",
        description="AdaLoRA: SVD-form LoRA with adaptive rank budget",
    ),
    MethodSpec(
        "adamss",
        "ADAMSS",
        hooks=hooks.ADAMSS,
        description="AdaMSS: adaptive multi-subspace adaptation, with its per-step subspace allocation",
    ),
    MethodSpec("loha", "LOHA", 1e-3, {"r": 8, "alpha": 16}, _QV, description="LoHa: low-rank Hadamard product"),
    MethodSpec("lokr", "LOKR", 1e-3, {"r": 8, "alpha": 16}, _QV, description="LoKr: low-rank Kronecker product"),
    MethodSpec(
        "ia3",
        "IA3",
        3e-3,
        {},
        _per_family(
            target_modules={
                "t5": ["k", "v", "wo"],
                "llama": ["k_proj", "v_proj", "down_proj"],
                "bert": ["key", "value", "output.dense"],
            },
            feedforward_modules={"t5": ["wo"], "llama": ["down_proj"], "bert": ["output.dense"]},
        ),
        description="IA3: learned rescaling of keys, values and feed-forward activations",
    ),
    MethodSpec(
        "prefix",
        "PREFIX_TUNING",
        1e-2,
        {"num_virtual_tokens": 20, "prefix_projection": True},
        reload_differs="it saves the prefixes its projection computed, not the projection",
        description="Prefix tuning (Li & Liang): reparameterized key/value prefixes",
    ),
    MethodSpec(
        "ptuning_v2",
        "PREFIX_TUNING",
        1e-2,
        {"num_virtual_tokens": 20, "prefix_projection": False},
        description="P-Tuning v2: deep prompts at every layer (prefix tuning without reparameterization)",
    ),
    MethodSpec(
        "ptuning",
        "P_TUNING",
        1e-2,
        {"num_virtual_tokens": 20, "encoder_hidden_size": 128, "encoder_reparameterization_type": "MLP"},
        reload_differs="it saves the virtual tokens its prompt encoder computed, not the encoder",
        description="P-tuning: virtual tokens from a prompt encoder",
    ),
    MethodSpec(
        "prompt_tuning",
        "PROMPT_TUNING",
        1e-2,
        {"num_virtual_tokens": 20},
        description="Prompt tuning: trainable input embeddings",
    ),
    MethodSpec(
        "trainable_tokens",
        "TRAINABLE_TOKENS",
        hooks=hooks.TRAINABLE_TOKENS,
        description="Trainable tokens: the embeddings of the tokens named in method_args.token_indices",
    ),
    MethodSpec(
        "adaption_prompt",
        "ADAPTION_PROMPT",
        1e-2,
        {"adapter_len": 10},
        hooks=hooks.ADAPTION_PROMPT,
        refusals={
            family: "adaption prompt (LLaMA-Adapter) supports decoder-only Llama-style models only"
            for family in ("t5", "bert")
        },
        description="Adaption prompt (LLaMA-Adapter): gated prompts in the top layers",
    ),
    # peft has layer-norm targets for T5 and Llama but none for BERT
    MethodSpec(
        "ln_tuning",
        "LN_TUNING",
        family_defaults={"bert": {"target_modules": ["LayerNorm"]}},
        description="LN tuning: trains the layer norms",
    ),
    MethodSpec(
        "shadow",
        "SHADOW",
        refusals={
            "t5": "peft's Shadow adapter passes inputs_embeds to an encoder-decoder model alongside "
            "input_ids, which T5 refuses",
            "bert": "peft's Shadow adapter fails on BERT models' forward pass (its carrier has no view)",
        },
        description="Shadow: a parallel shadow network beside the frozen model",
    ),
    MethodSpec("multitask_prompt_tuning", "MULTITASK_PROMPT_TUNING", refusals={"*": _NEEDS_TASK_IDS}),
    MethodSpec("poly", "POLY", refusals={"*": _NEEDS_TASK_IDS}),
    MethodSpec(
        "xlora",
        "XLORA",
        refusals={
            "*": "X-LoRA mixes LoRA adapters that are already trained (its `adapters` paths); a cell "
            "that trains from a base model has none to mix"
        },
    ),
    MethodSpec(
        "cpt",
        "CPT",
        refusals={
            "*": "CPT needs its few-shot context masks per example (cpt_token_ids, cpt_mask, "
            "cpt_tokens_type_mask) built from its template; the harness's tasks do not produce them"
        },
    ),
    MethodSpec("full", None, 5e-5, description="Full fine-tuning: every weight trains"),
    MethodSpec(
        "zeroshot",
        None,
        0.0,
        trains=False,
        report_role="reference",
        title="zero-shot",
        description="No training: evaluate the base model",
    ),
)


@lru_cache(maxsize=1)
def peft_types() -> tuple[str, ...]:
    """The ``PeftType`` values of the installed peft, in peft's order, read from its source
    (``peft/utils/peft_types.py``) without importing peft, which takes seconds; if that file
    moved, from the imported enum."""
    spec = importlib.util.find_spec("peft")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("peft is not installed; install the harness with `make install`")
    source = Path(next(iter(spec.submodule_search_locations))) / "utils" / "peft_types.py"
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        enum = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "PeftType")
        values = tuple(
            node.value.value
            for node in enum.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        if values:
            return values
    except (OSError, SyntaxError, StopIteration):
        pass
    from peft import PeftType

    return tuple(member.value for member in PeftType)


@lru_cache(maxsize=1)
def methods() -> dict[str, MethodSpec]:
    """Every method by name: the declared entries first (the study's order), then one per
    remaining ``PeftType`` of the installed peft."""
    table = {spec.name: spec for spec in DECLARED}
    for peft_type in peft_types():
        name = peft_type.lower()
        if name not in table:
            table[name] = MethodSpec(name, peft_type, generated=True)
    return table


def method_names() -> tuple[str, ...]:
    return tuple(methods())


def known_method(name: str) -> MethodSpec | None:
    """A method's entry, or None for a name the installed peft does not have (a report may read
    results of methods an older or newer peft had)."""
    return methods().get(name)


def method_in_role(role: ReportRole) -> MethodSpec:
    """The declared method that plays this part in a report."""
    (spec,) = (spec for spec in DECLARED if spec.report_role == role)
    return spec


def resolve_method(name: str) -> MethodSpec:
    table = methods()
    if name not in table:
        raise ConfigError(f"unknown method {name!r}; valid: {', '.join(table)}")
    return table[name]


# Keys of an adapter_config.json that describe the saved adapter, not the method: the harness
# sets them for each cell (see build.MANAGED_FIELDS) or peft writes them as bookkeeping.
_ADAPTER_FILE_BOOKKEEPING = frozenset(
    {"task_type", "peft_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping", "peft_version"}
)


def read_adapter_config(path: Any, method: str) -> dict[str, Any]:
    """The method arguments of a saved ``adapter_config.json`` (``method_args: {from: path}``).

    Its ``peft_type`` must be the method's; the fields that describe the saved adapter rather
    than the method (task type, base model, peft version, ...) are left to the harness. The
    arguments go into the cell's config, so the cell id follows the file's content."""
    import json

    from harness.safeyaml import MAX_DEPTH, read_bounded

    file = Path(str(path)).expanduser()
    where = f"method_args.from {shorten(str(path))}"
    if not file.is_file():
        raise ConfigError(f"{where}: no such file (give the path of an adapter_config.json)")
    try:  # its size checked before it is read: an adapter_config.json is a few hundred bytes
        data = json.loads(read_bounded(file, hint="an adapter_config.json is a small file").decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{where}: not a readable JSON file ({_one_line(error)})") from None
    except RecursionError:  # "[" * 100,000: past the parser's recursion limit
        raise ConfigError(f"{where}: nested deeper than Python can read (an adapter_config.json is flat)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object (an adapter_config.json), got {type(data).__name__}")
    if _nested_deeper_than(data, MAX_DEPTH):  # what json reads, dumping the cell's config could not
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep (an adapter_config.json is flat)")
    table = methods()
    spec = table.get(method)
    saved_type = data.get("peft_type")
    if spec is not None and spec.peft_type is not None and saved_type not in (None, spec.peft_type):
        matching = [name for name, entry in table.items() if entry.peft_type == saved_type]
        raise ConfigError(
            f"{where}: a {clip(str(saved_type))} adapter config, but method {method!r} is {spec.peft_type}; "
            f"methods of that type: {', '.join(matching) or 'none'}"
        )
    return {key: value for key, value in data.items() if key not in _ADAPTER_FILE_BOOKKEEPING}


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether dicts and lists nest more than ``limit`` levels (iterative: any depth is counted)."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            todo.extend((inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item))
    return False


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
