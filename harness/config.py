"""Typed configuration of one benchmark cell (model x method x task x seed).

Configuration is validated once, at the edge (cell file, CLI flags, matrix expansion); inner
code trusts these objects. This module checks the structure: every model rejects unknown keys
with an error that names the key and lists the valid ones with their defaults. Names that a
registry owns (methods, tasks) are checked by :mod:`harness.cell.resolve`, which sits above the
registries: this module is the bottom layer and imports none of them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import sys
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError, clip, shorten

# What a value that reaches a job script or a terminal must not hold, by Unicode category: controls
# (newline, CR, NUL, ESC, ...), line and paragraph separators, invisible format characters (the bidi
# overrides such as U+202E RIGHT-TO-LEFT OVERRIDE, which reorder what a terminal shows, U+200B ZERO
# WIDTH SPACE, U+FEFF, soft hyphens) and lone surrogates
REFUSED_CHARACTERS = {
    "Cc": "control character",
    "Zl": "control character",
    "Zp": "control character",
    "Cf": "invisible format character",
    "Cs": "surrogate",
}


@functools.cache
def _refused_pattern() -> re.Pattern[str]:
    """A character class of every refused code point, built on the first value that is not plain
    printable text (a quarter second, once); a search is then linear at C speed."""
    ranges: list[str] = []
    start = previous = -2
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) not in REFUSED_CHARACTERS:
            continue
        if code != previous + 1:
            if start >= 0:
                ranges.append(f"\\U{start:08x}-\\U{previous:08x}")
            start = code
        previous = code
    ranges.append(f"\\U{start:08x}-\\U{previous:08x}")
    return re.compile(f"[{''.join(ranges)}]")


def single_line(value: str) -> str:
    """Refuse a character of :data:`REFUSED_CHARACTERS` in a value that reaches a job script or a
    terminal: a newline would end an ``#SBATCH`` line and run the rest as a command, an escape
    sequence or a bidi override would change what a person reads in a plan, a status or an error."""
    if value.isprintable():  # none of them (nor anything else unprintable but a space): the common case
        return value
    found = _refused_pattern().search(value)
    if found is not None:
        char = found[0]
        name = unicodedata.name(char, "")
        raise ValueError(
            f"{REFUSED_CHARACTERS[unicodedata.category(char)]} U+{ord(char):04X}{f' ({name})' if name else ''} "
            f"at position {found.start()} in {value[:40]!r}: values that reach a job script or a terminal "
            "must be one line of visible text"
        )
    return value


# A string that ends up in a job script (#SBATCH lines, paths, the job's shell lines).
Line = Annotated[str, AfterValidator(single_line)]

SBATCH_KEY = re.compile(r"[a-z][a-z0-9-]*")


def sbatch_key(value: str) -> str:
    if not SBATCH_KEY.fullmatch(value):
        raise ValueError(
            f"sbatch_extra key {value[:40]!r}: write an sbatch long option without its dashes, "
            "lowercase letters, digits and '-' (e.g. mail-type, exclusive)"
        )
    return value


SbatchKey = Annotated[str, AfterValidator(sbatch_key)]


# transformers.set_seed seeds numpy, whose seeds are 0 <= seed < 2**32: the tightest of the RNGs a
# cell seeds (torch takes 64 bits, python's random any int), so a seed beyond it is refused at plan time
MAX_SEED = 2**32 - 1


def seed_in_range(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"seed {shorten(value)} is out of range: seeds are 0 .. {MAX_SEED:,} (2**32 - 1, numpy's)")
    return value


Seed = Annotated[int, AfterValidator(seed_in_range)]

# far above any fine-tuning run, and the step count (epochs x batches per epoch) stays a number the
# loop can hold: 1e308 epochs would make it infinite, a crash at run time instead of a refusal now
MAX_EPOCHS = 1e6


def finite_values(value: Any) -> Any:
    """Refuse a NaN or infinite float anywhere in a free-form mapping (``method_args``,
    ``model_args``): the typed fields refuse them through ``allow_inf_nan=False``, but a mapping of
    Any would carry ``lora_alpha: .nan`` into training, which then "succeeds" on a broken model.
    Iterative and linear: each item remembers its parent, the path is spelled out on refusal only."""
    todo: list[tuple[Any, Any]] = [(value, None)]  # (item, (its key, its parent's entry) or None)
    while todo:
        item, where = todo.pop()
        if isinstance(item, float) and not math.isfinite(item):
            parts = []
            while where is not None:
                key, where = where
                parts.append(f"[{key}]" if isinstance(key, int) else f".{clip(key)}")
            path = clip("".join(reversed(parts)).lstrip("."), 200)
            raise ValueError(f"{path + ': ' if path else ''}{item} is not a finite number; give a finite value")
        if isinstance(item, dict):
            todo.extend((inner, (str(key), where)) for key, inner in item.items())
        elif isinstance(item, (list, tuple)):
            todo.extend((inner, (index, where)) for index, inner in enumerate(item))
    return value


# a free-form mapping of settings: any keys and values, but every float in it finite
FiniteMapping = Annotated[dict[str, Any], AfterValidator(finite_values)]


class StrictModel(BaseModel):
    # unknown keys are typos; NaN and infinity are never a setting (`epochs: .inf`, `mem_gb: .nan`)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @classmethod
    def describe_fields(cls) -> str:
        parts = []
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True) if not field.is_required() else "<required>"
            if isinstance(default, BaseModel):
                default = "{...}"
            parts.append(
                f"{name}={default!r}"
                if not isinstance(default, str) or default != "<required>"
                else f"{name} (required)"
            )
        return ", ".join(parts)


class DataSource(StrictModel):
    """Where a task's examples come from: a Hub dataset or local files.

    ``fields`` maps the task's canonical field names (``text``, ``label`` for
    emotion; ``text``, ``summary`` for billsum) to the column names in the source,
    so a user's own dataset works without code.
    """

    hub_id: str | None = None
    revision: str | None = None
    # split name -> local file (JSONL, CSV or Parquet) or Hub split name
    files: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, str] = Field(default_factory=dict)
    # label names in id order, for sources whose labels are strings
    label_names: list[str] | None = None
    # how local files are read, as published (pandas does the parsing): the format (default: each
    # file's extension), a CSV/TSV's one-character delimiter, whether its first row names the columns
    # (``header: none`` with ``columns``: AG News's layout; or the 0-based line that does, the lines
    # before it skipped: pandas' header=N) and the text encoding
    format: str | None = None
    delimiter: str | None = None
    header: Literal["first", "none"] | int = "first"  # none: no header row; give columns
    columns: list[str] | None = None
    encoding: str = "utf-8"
    # the id the file gives the first class, for numeric labels (AG News's 1..4: 1)
    label_base: int = 0
    # drop rows whose input and target text, joined by a space, are longer than this many
    # characters (peft's MetaMathQA filter: len(f"{query} {response}") <= 1300), before any sample
    max_chars: int | None = Field(None, ge=1)
    # split -> sha256 of the local file the cell reads for it: recorded at plan time by
    # harness.cell.resolve (a user may also pin them), so that the cell id follows the files'
    # content and a job refuses a file that changed after its cell was planned
    sha256: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> DataSource:
        if self.hub_id and self.files and any(Path(f).suffix for f in self.files.values()):
            raise ValueError("data source: give either hub_id or local files, not both")
        return self

    @field_validator("header", mode="before")
    @classmethod
    def _header_line(cls, value: Any) -> Any:
        choices = "give first, none or the header's 0-based line number"
        if isinstance(value, int) and not isinstance(value, bool):  # YAML's yes/no is no line number
            if value < 0:
                raise ValueError(f"header {value}: a line number counts from 0; {choices}")
            return "first" if value == 0 else value  # line 0 is the first line: the same read, the same id
        if value in ("first", "none"):
            return value
        raise ValueError(f"header {shorten(str(value))}: {choices}")

    @model_validator(mode="after")
    def _readable(self) -> DataSource:
        if self.label_base < 0:
            raise ValueError(
                f"data source: label_base {self.label_base} is negative; give the id the file gives the first "
                "class (0, or 1 for ids 1..N as AG News's)"
            )
        if self.format is not None and self.format not in FILE_FORMATS:
            raise ValueError(f"data source: unknown format {shorten(self.format)}; valid: {', '.join(FILE_FORMATS)}")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(
                f"data source: delimiter {shorten(self.delimiter)} is not one character; give one, e.g. ',' or '\\t'"
            )
        if self.header == "none" and not self.columns:
            raise ValueError("data source: header: none needs columns: [names] (the file's columns, in order)")
        if self.header != "none" and self.columns is not None:
            raise ValueError("data source: columns names a headerless file's columns; give header: none with it")
        for split, digest in (self.sha256 or {}).items():
            if not _SHA256.fullmatch(digest):
                raise ValueError(
                    f"data source: sha256.{shorten(split)} is not a sha256 (64 hex digits): {shorten(digest)}"
                )
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise ValueError(f"data source: columns {', '.join(self.columns)} repeat a name; give each column its own")
        if self.format in ("jsonl", "json", "parquet") and (self.delimiter or self.header != "first"):
            raise ValueError(f"data source: delimiter and header are for csv and tsv files, not {self.format}")
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(
                f"data source: unknown encoding {shorten(self.encoding)}; give a Python codec name, e.g. utf-8 or latin-1"
            ) from None
        return self


_SHA256 = re.compile(r"[0-9a-f]{64}")

# data.source.format: the file formats read (default: from each file's extension)
FILE_FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")


class ForgettingConfig(StrictModel):
    """``data.forgetting``: peft's forgetting metric (method_comparison/MetaMathQA): the mean
    per-token cross-entropy on a fixed general-text sample after training minus the same loss of
    the base model (the adapter disabled; for full fine-tuning, measured before training).
    harness.tasks.forgetting names the samples and computes it."""

    # a bundled sample ("wikitext-103-test"), "finewiki" (the Hub's HuggingFaceFW/finewiki, peft's
    # sample), or a local .jsonl (a "text" field per line) or .txt (one article per line) file
    sample: Line = "wikitext-103-test"
    articles: int = Field(100, ge=1)  # the first this many articles (peft: 100)
    max_tokens: int = Field(768, ge=1)  # each article truncated to this many tokens (peft: 768)


class DataConfig(StrictModel):
    """Task data settings: which splits, how much, how long."""

    source: DataSource | None = None  # None: the bundled offline copy
    # the training split's rows from another source than the task's (peft's benchmark: train on
    # MetaMathQA, validate and test on GSM8K), mapped onto the task's fields by its ``fields``;
    # None: the task's own train split. Its ``train_split`` names the split read from it
    train_source: DataSource | None = None
    train_split: str = "train"
    eval_split: str = "test"
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)
    max_source_tokens: int = Field(512, ge=1)  # study: 1,400 for BillSum
    max_target_tokens: int = Field(128, ge=1)  # study: 256 for BillSum
    num_beams: int = Field(1, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)  # default: max_target_tokens
    class_weighted_loss: bool = False  # w_c = N / (C * n_c)
    # train.eval_every: the loss on this split while training (a validation split, or BillSum's
    # held-out slice of train), on at most this many examples (a seeded sample)
    validation_split: str = "validation"
    max_validation_samples: int | None = Field(256, ge=1)
    # a selection split the task carves out of this cell's training data (BillSum's validation):
    # recorded from the task's registry entry by harness.cell.resolve, never written by hand; in
    # the cell id because such a cell trains on less than the whole split
    held_out: str | None = None
    # decoder-only generation's prompt: "plain" (an ### Instruction / ### Response template), "chat"
    # (the tokenizer's chat template), or "auto" (chat for an instruct/chat model whose tokenizer has
    # one). harness.cell.resolve turns auto into plain or chat, which the cell id and result.json keep
    prompt_template: Literal["auto", "plain", "chat"] = "auto"
    # peft's forgetting metric on a general-text sample (ForgettingConfig); None: not measured
    forgetting: ForgettingConfig | None = None


class TrainConfig(StrictModel):
    """The training loop's settings. Defaults suit a quick CPU run."""

    max_steps: int | None = None  # overrides epochs when set
    epochs: float = Field(1.0, gt=0, le=MAX_EPOCHS)
    batch_size: int = 8
    eval_batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float | None = Field(None, gt=0)  # None: the method's default
    weight_decay: float = Field(0.0, ge=0)
    adam_betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    # no warmup by default (Hugging Face Trainer's default too): in the parity benchmark's setting
    # (MiniLM-L6 LoRA on emotion, 300 steps of 32, constant 2e-3) a 6 % warmup cost accuracy in
    # each of 4 paired runs, 1.5-5.4 points (bench/results/parity-probes.jsonl).
    # A likely reason: AdamW's second moment (beta2 0.999 remembers ~1,000 steps) keeps the large
    # gradients of the extra high-loss steps and shrinks every later update. Set it for long runs.
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float | None = Field(1.0, gt=0)  # None: no clipping
    optimizer: Literal["auto", "adamw", "paged_adamw_8bit"] = "auto"
    gradient_checkpointing: bool = False
    # length-grouped batches (harness/train/batching.py) pad far less (emotion at batch 32: 3 %
    # instead of 57 %; 2.3x the samples/s on CPU) but each batch is one length stratum: in the
    # parity benchmark's setting they cost macro-F1 in 4 of 5 paired runs, 4.8-14.6 points (the
    # fifth: no change; bench/results/parity-probes.jsonl). Off by default, as in Hugging Face's Trainer: a speed
    # setting to choose knowingly
    group_by_length: bool = False
    # padding-free batches for decoder-only heads: the batch's examples are concatenated into one
    # row with restarting position ids (transformers' DataCollatorWithFlattening); attention stays
    # within each example (SDPA and flash-attention varlen read the position ids)
    packing: bool = False
    # torch.compile the model (GPU only: a CPU run warns and trains uncompiled); the first step,
    # which compiles, is kept out of the throughput figures
    compile: bool = False
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    checkpoint_every: int = Field(0, ge=0)  # optimizer steps; 0 disables periodic checkpoints
    # optimizer steps between validation losses (data.validation_split; the report's curves); 0: off
    eval_every: int = Field(0, ge=0)
    # several processes (resources: nodes x tasks per node): ddp replicates the model and averages
    # gradients; fsdp shards parameters, gradients and optimizer state. A matrix sets ddp when its
    # cell has more than one task; batch_size stays the global batch (each rank takes its share)
    distributed: Literal["none", "ddp", "fsdp"] = "none"
    # fsdp: keep the sharded parameters, gradients and optimizer state in CPU memory between uses
    # (FSDP2's CPUOffloadPolicy; the optimizer steps on the CPU); on a CPU run there is nothing to offload
    fsdp_cpu_offload: bool = False
    log_every: int = Field(10, ge=0)
    progress_bar: bool = True

    @model_validator(mode="after")
    def _positive(self) -> TrainConfig:
        for name in ("batch_size", "eval_batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError("train.max_steps must be >= 0")
        return self


class TrackingConfig(StrictModel):
    enabled: bool = True
    # None: $MLFLOW_TRACKING_URI, else a SQLite file in the cell's output folder
    uri: str | None = None
    experiment: str = "harness"
    log_adapter: bool = True
    system_metrics: bool = False  # MLflow's own system metrics stay off by default


# the sampler's backends: NVML on a GPU node, the host's process tree elsewhere, auto picks
TelemetryBackend = Literal["auto", "nvml", "host"]


class TelemetryConfig(StrictModel):
    enabled: bool = True
    backend: TelemetryBackend = "auto"
    interval_s: float = Field(0.2, gt=0)


# the train settings a cell that does not train (zero-shot) still uses: the evaluation batch,
# the precision and the process layout. The others (batch size, learning rate, steps, ...) are
# not recorded for such a cell (result.json, MLflow params), as they played no part in its result
EVALUATION_SETTINGS = ("eval_batch_size", "precision", "distributed")


def without_training(config: dict[str, Any]) -> dict[str, Any]:
    """A config dump (or identity) whose train section keeps only ``EVALUATION_SETTINGS``."""
    train = config.get("train")
    if not isinstance(train, dict):
        return config
    return {**config, "train": {k: v for k, v in train.items() if k in EVALUATION_SETTINGS}}


# section -> {setting: its default}: see CellConfig.identity ("" is the top level)
ADDED_LATER: dict[str, dict[str, Any]] = {
    "train": {"packing": False, "compile": False, "eval_every": 0, "distributed": "none", "fsdp_cpu_offload": False},
    "data": {
        "validation_split": "validation",
        "max_validation_samples": 256,
        "held_out": None,
        "prompt_template": "plain",
        "forgetting": None,
        "train_source": None,
    },
    "data.source": {
        "format": None,
        "delimiter": None,
        "header": "first",
        "columns": None,
        "encoding": "utf-8",
        "sha256": None,
        "label_base": 0,
        "max_chars": None,
    },
    "": {"task_definition": None},
}


# Settings read by the evaluation alone: a model trained under one value of each is the model
# trained under another (what split is scored, how much of it, how answers are generated)
EVALUATION_ONLY = (
    "data.eval_split",
    "data.max_eval_samples",
    "data.num_beams",
    "data.max_new_tokens",
    "train.eval_batch_size",
)


class CellConfig(StrictModel):
    """One cell, fully resolved. ``cell_id`` hashes everything that changes results."""

    model: str
    method: str
    task: str
    # a task defined in the matrix (kind, labels, metric, instruction), as a plain mapping: this
    # bottom layer knows no task kinds; harness.cell.resolve checks it against the tasks' registry
    # (harness.tasks.registry.TaskDefinition) and normalises it to that model's dump. None: a bundled task
    task_definition: dict[str, Any] | None = None
    seed: Seed = 0
    # overrides of any field of the method's PEFT config (r, lora_alpha, target_modules, ...)
    method_args: FiniteMapping = Field(default_factory=dict)
    # overrides of model loading (dtype, ...)
    model_args: FiniteMapping = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    output_dir: Path = Path("outputs/local")
    tags: dict[str, str] = Field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The part of the config that determines results (not where they go)."""
        data = self.model_dump(mode="json", exclude={"output_dir", "tracking", "telemetry", "tags"})
        data["train"].pop("progress_bar", None)
        data["train"].pop("log_every", None)
        data["train"].pop("checkpoint_every", None)
        # Settings added after cells were first run enter the id only when set, so a matrix
        # planned before they existed keeps its cell ids (and its finished cells).
        for section, defaults in ADDED_LATER.items():
            node: Any = data
            for part in section.split(".") if section else ():
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):  # data.source is None: the bundled copy
                continue
            for key, default in defaults.items():
                if node.get(key) == default:
                    node.pop(key)
        # auto not yet resolved (a config built in code, before harness.cell.resolve): what every
        # cell was before the setting existed
        if data["data"].get("prompt_template") == "auto":
            data["data"].pop("prompt_template")
        return data

    def training_identity(self) -> dict[str, Any]:
        """The identity less the settings that only evaluation reads (``EVALUATION_ONLY``): two
        cells with equal training identities train the same model (a sweep's stage 2 reuses the
        stage-1 winner's run for its first seed on that condition, harness.cell.reuse)."""
        data = self.identity()
        for dotted in EVALUATION_ONLY:
            section, key = dotted.split(".")
            data[section].pop(key, None)
        return data

    def public_dump(self, *, trains: bool = True) -> dict[str, Any]:
        """The config as files and logs keep it (config.yaml, result.json): credentials in
        the tracking URI redacted. The job itself gets the full ``model_dump``. ``trains=False``
        (a method that does not train, from its registry entry): the train section keeps only
        what evaluation uses (``without_training``); the cell id is the full config's all the same."""
        from harness.redact import redact_values

        data = redact_values(self.model_dump(mode="json"))
        return data if trains else without_training(data)

    @property
    def cell_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_UNION_TAG = re.compile(r"[\w-]+\[.*\]")  # pydantic's name of a union branch, e.g. function-after[single_line(), str]
_SCALAR_TAGS = frozenset({"str", "int", "float", "bool", "[key]"})


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation can hold (``DataSource | None`` -> [DataSource])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    import typing

    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """(the location as a user wrote it, the model that owns its last part).

    Union branch tags are dropped from the location; a part that is not plain printable text
    (a key with a newline) is shown quoted so the message stays one line."""
    shown: list[str] = []
    owner: type[BaseModel] | None = model
    for part in loc:
        text = str(part)
        if isinstance(part, str) and (text in _SCALAR_TAGS or _UNION_TAG.fullmatch(text)):
            continue
        if owner is not None and isinstance(part, str) and part not in owner.model_fields:
            tagged = [m for m in _strict_models() if m.__name__ == part]
            if tagged:  # a union branch named by its class (AxisEntry): the owner from here on
                owner = tagged[0]
                continue
        shown.append(clip(text) if text.isprintable() and text else shorten(text))
        field = owner.model_fields.get(text) if owner is not None and isinstance(part, str) else None
        if field is not None:
            nested = _models_in(field.annotation)
            owner = nested[0] if nested else None
        elif not isinstance(part, int):
            owner = None
    return shown, owner


def _strict_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    todo = list(StrictModel.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


_MAPPING_ERRORS = frozenset({"model_type", "model_attributes_type", "dict_type"})


def _preferred(errors: list[Any]) -> Any:
    """Of the errors pydantic reports for a ``str | Model`` (or ``str | list[str]``) union, the one
    of the branch the user meant: the mapping's (list's) own problem for a mapping (list), the
    string's for a string."""

    def wrong_branch(error: Any) -> bool:
        last = str(error["loc"][-1]) if error["loc"] else ""
        tagged = _UNION_TAG.fullmatch(last)
        # function-after[single_line(), str] is a string branch; function-after[..., TaskEntry] a mapping's
        scalar_branch = last in _SCALAR_TAGS or bool(
            tagged and last.rstrip("]").rsplit(",", 1)[-1].strip() in {"str", "int", "float", "bool"}
        )
        given_mapping = isinstance(error.get("input"), dict)
        # a scalar branch given a mapping or a list (``str | list[str]``): the other branch's error says more
        return (scalar_branch and isinstance(error.get("input"), (dict, list))) or (
            error["type"] in _MAPPING_ERRORS and not given_mapping and len(errors) > 1
        )

    return next((e for e in errors if not wrong_branch(e)), errors[0])


def _describe(owner: type[BaseModel]) -> str:
    return owner.describe_fields() if issubclass(owner, StrictModel) else ", ".join(owner.model_fields)


def format_validation_error(error: ValidationError, model: type[BaseModel], where: str) -> str:
    """Turn pydantic's multi-line report into one line that names the problem and, for a
    wrong key or a value where a mapping belongs, the valid keys of the mapping it is in."""
    first = _preferred(error.errors())
    loc = tuple(first["loc"])
    if first["type"] == "extra_forbidden":
        shown, _ = _walk(model, loc)
        _, owner = _walk(model, loc[:-1])
        valid = _describe(owner or model)
        return f"{where}: unknown key {'.'.join(shown)!r}; valid keys: {valid}"
    shown, owner = _walk(model, loc)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in _MAPPING_ERRORS and owner is not None:
        message += f" (a mapping; valid keys: {_describe(owner)})"
    text = f"{where}: {'.'.join(shown) + ': ' if shown else ''}{message}"
    return " ".join(text.split()) if "\n" in text else text


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping, or a one-line ConfigError naming the problem.

    Read within the limits of :mod:`harness.safeyaml` (no aliases, no duplicate keys, size
    and depth caps, UTF-8), so a hostile file is refused before anything walks it; its size
    before anything is read."""
    from harness.safeyaml import YamlRefused, load_yaml_bytes, read_bounded

    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = load_yaml_bytes(read_bounded(path)) or {}
    except YamlRefused as error:
        raise ConfigError(f"{path}: {error}") from None
    except OSError as error:
        raise ConfigError(f"{what} {path}: cannot read it ({error.strerror or error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
