"""The ``result.json`` schema: the single source of truth of a cell.

Defined here, once, and versioned. Everything downstream (tracking, dispatch
status, reports) reads results through :func:`load_result`. A result is written
atomically (temp file + rename) so a killed process never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"

Status = Literal["success", "failed", "oom", "timeout", "cancelled", "running"]
# the statuses a cell ends with (every status but "running"): status, collect and the job read these
FINAL_STATUSES: frozenset[str] = frozenset(typing.get_args(Status)) - {"running"}


class PhaseStats(BaseModel):
    """Wall time and peak memory of one phase (load, train, eval)."""

    model_config = ConfigDict(extra="allow")
    wall_s: float = 0.0
    # GPU: torch allocator peaks; CPU: process RSS peak (bytes)
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    peak_rss_bytes: int | None = None


class RankStats(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rank: int
    node: int
    host: str
    peak_bytes: int | None = None  # the torch allocator's peak on the rank's GPU, else the process's peak RSS
    measure: str = "rss"  # gpu | rss


class Efficiency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trainable_params: int = 0
    total_params: int = 0
    trainable_share: float = 0.0  # trainable / total, 4-bit weights counted at full size
    phases: dict[str, PhaseStats] = Field(default_factory=dict)
    train_steps: int = 0
    train_samples: int = 0
    train_samples_per_s: float | None = None
    train_tokens_per_s: float | None = None  # non-padding tokens
    # 4N + 2T per token (6N for full fine-tuning), see harness.train.mfu
    model_flops_per_token: float | None = None
    # train_tokens_per_s x model_flops_per_token / the device's dense bf16 peak (None: CPU or a GPU not in the table)
    mfu: float | None = None
    compile_s: float | None = None  # the compiling first step (train.compile), kept out of the throughput
    padding_fraction: float | None = None
    adapter_bytes: int | None = None
    final_train_loss: float | None = None
    # (optimizer step, training loss of that step: its micro-batches' losses summed), every step
    loss_history: list[tuple[int, float]] = Field(default_factory=list)
    # (optimizer step, mean loss on the validation split), every train.eval_every steps
    eval_loss_history: list[tuple[int, float]] = Field(default_factory=list)
    resumed_from_step: int | None = None
    # a distributed cell (train.distributed): each rank's peak memory during training, and the
    # telemetry summary of every node but rank 0's (whose is ``telemetry``), by node index
    ranks: list[RankStats] = Field(default_factory=list)
    node_telemetry: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # NVML energy of the whole job: every node's devices, train and eval (None without NVML)
    job_energy_j: float | None = None


class RunRecord(BaseModel):
    """What ran, as built: the resolved peft config and the settings the harness filled in.
    Reports read these rather than merging registry defaults again, so a later change of a
    default cannot rewrite an old result."""

    model_config = ConfigDict(extra="forbid")
    head: str  # seq2seq | causal | seqcls
    family: str  # t5 | llama | bert
    # peft_config.to_dict() of the model as built (target modules filled in, defaults included);
    # None for full fine-tuning and zero-shot
    peft_config: dict[str, Any] | None = None
    learning_rate: float | None = None  # None: the method does not train
    total_steps: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    # train.distributed: the processes that trained, and the batch each optimizer step saw
    distributed: str = "none"
    world_size: int = 1
    per_device_batch: int = 0  # train.batch_size / world size
    effective_batch: int = 0  # per-device batch x world size x grad_accum


class TrackingStatus(BaseModel):
    status: Literal["logged", "failed", "disabled", "pending"] = "pending"
    uri: str | None = None
    run_id: str | None = None
    error: str | None = None


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    cell_id: str
    status: Status
    error: str | None = None
    traceback: str | None = None
    config: dict[str, Any]
    run: RunRecord | None = None  # None until the model is built
    metrics: dict[str, float] = Field(default_factory=dict)  # quality: rouge1, accuracy, f1_macro, ...
    reports: dict[str, Any] = Field(default_factory=dict)  # per-class report, confusion matrix
    efficiency: Efficiency = Field(default_factory=Efficiency)
    telemetry: dict[str, Any] = Field(default_factory=dict)  # per-phase summaries, see harness.telemetry
    environment: dict[str, Any] = Field(default_factory=dict)
    tracking: TrackingStatus = Field(default_factory=TrackingStatus)
    artifacts: dict[str, str] = Field(default_factory=dict)  # name -> path relative to the cell folder
    started_at: str = Field(default_factory=lambda: now_iso())
    finished_at: str | None = None

    @property
    def model(self) -> str:
        return str(self.config.get("model"))

    @property
    def method(self) -> str:
        return str(self.config.get("method"))

    @property
    def task(self) -> str:
        return str(self.config.get("task"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any file
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result(cell_dir: Path, result: Result) -> Path:
    """The one writer of result.json: atomic, and with credentials in URIs redacted
    (a tracking URI's password never reaches the file, whichever field carries it)."""
    from harness.redact import redact_values

    path = cell_dir / RESULT_FILE
    write_json_atomic(path, redact_values(result.model_dump(mode="json")))
    return path


def load_result(cell_dir_or_file: Path) -> Result:
    path = cell_dir_or_file if cell_dir_or_file.suffix == ".json" else cell_dir_or_file / RESULT_FILE
    data = json.loads(path.read_text())
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: result schema version {version}, this harness reads {SCHEMA_VERSION}")
    return Result.model_validate(data)
