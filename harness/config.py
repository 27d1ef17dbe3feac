"""Typed configuration of one benchmark cell (model x method x task x seed).

Configuration is validated once, here, at the edge (cell file, CLI flags, matrix
expansion); inner code trusts these objects. Every model rejects unknown keys with
an error that names the key and lists the valid ones with their defaults.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

METHODS: tuple[str, ...] = (
    "lora",
    "qlora",
    "adalora",
    "loha",
    "lokr",
    "ia3",
    "prefix",
    "ptuning_v2",
    "ptuning",
    "prompt_tuning",
    "full",
    "zeroshot",
)
TASKS: tuple[str, ...] = ("billsum", "emotion")


class ConfigError(ValueError):
    """A configuration problem, reported as one line that names it."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def describe_fields(cls) -> str:
        parts = []
        for name, field in cls.model_fields.items():
            default = field.get_default(call_default_factory=True) if not field.is_required() else "<required>"
            if isinstance(default, BaseModel):
                default = "{...}"
            parts.append(f"{name}={default!r}" if not isinstance(default, str) or default != "<required>" else f"{name} (required)")
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

    @model_validator(mode="after")
    def _one_origin(self) -> "DataSource":
        if self.hub_id and self.files and any(Path(f).suffix for f in self.files.values()):
            raise ValueError("data source: give either hub_id or local files, not both")
        return self


class DataConfig(StrictModel):
    """Task data settings: which splits, how much, how long."""

    source: DataSource | None = None  # None: the bundled offline copy
    train_split: str = "train"
    eval_split: str = "test"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_source_tokens: int = 512  # study: 1,400 for BillSum
    max_target_tokens: int = 128  # study: 256 for BillSum
    num_beams: int = 1
    max_new_tokens: int | None = None  # default: max_target_tokens
    class_weighted_loss: bool = False  # w_c = N / (C * n_c)


class TrainConfig(StrictModel):
    """The training loop's settings. Defaults suit a quick CPU run."""

    max_steps: int | None = None  # overrides epochs when set
    epochs: float = 1.0
    batch_size: int = 8
    eval_batch_size: int = 16
    grad_accum: int = 1
    learning_rate: float | None = None  # None: the method's default
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.06
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float | None = 1.0
    optimizer: Literal["auto", "adamw", "paged_adamw_8bit"] = "auto"
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    checkpoint_every: int = 0  # optimizer steps; 0 disables periodic checkpoints
    log_every: int = 10
    progress_bar: bool = True

    @model_validator(mode="after")
    def _positive(self) -> "TrainConfig":
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


class TelemetryConfig(StrictModel):
    enabled: bool = True
    backend: Literal["auto", "nvml", "host"] = "auto"
    interval_s: float = 0.2


class CellConfig(StrictModel):
    """One cell, fully resolved. ``cell_id`` hashes everything that changes results."""

    model: str
    method: str
    task: str
    seed: int = 0
    # overrides of any field of the method's PEFT config (r, lora_alpha, target_modules, ...)
    method_args: dict[str, Any] = Field(default_factory=dict)
    # overrides of model loading (dtype, ...)
    model_args: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    output_dir: Path = Path("outputs/local")
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_names(self) -> "CellConfig":
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid: {', '.join(TASKS)}")
        return self

    def identity(self) -> dict[str, Any]:
        """The part of the config that determines results (not where they go)."""
        data = self.model_dump(mode="json", exclude={"output_dir", "tracking", "telemetry", "tags"})
        data["train"].pop("progress_bar", None)
        data["train"].pop("log_every", None)
        data["train"].pop("checkpoint_every", None)
        return data

    @property
    def cell_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def format_validation_error(error: ValidationError, model: type[BaseModel], where: str) -> str:
    """Turn pydantic's multi-line report into one line that names the problem."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        owner: type[BaseModel] = model
        for part in first["loc"][:-1]:
            field = owner.model_fields.get(str(part))
            annotation = getattr(field, "annotation", None) if field else None
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                owner = annotation
        valid = owner.describe_fields() if issubclass(owner, StrictModel) else ", ".join(owner.model_fields)
        return f"{where}: unknown key {loc!r}; valid keys: {valid}"
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {loc + ': ' if loc else ''}{message}"


def parse_cell_config(data: dict[str, Any], where: str = "cell config") -> CellConfig:
    try:
        return CellConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, CellConfig, where)) from None


def read_yaml_mapping(path: Path, kind: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping, or a one-line ConfigError naming the problem."""
    if not path.is_file():
        raise ConfigError(f"{kind} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{line}: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_cell_config(path: Path, overrides: dict[str, Any] | None = None) -> CellConfig:
    """Read a cell YAML/JSON file, apply CLI overrides (dotted keys), validate."""
    data = read_yaml_mapping(path, kind="config file")
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return parse_cell_config(data, where=str(path))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
