"""``result.json``: the single source of truth of a cell, its schema and its one owner.

The schema is defined here, once, and versioned. :class:`ResultFile` owns a cell folder's
result: the cell writes ``result.json`` through it (begun "running", updated, finished, then the
tracking outcome noted); the job and ``harness collect`` write small files of their own beside
it (``outcome.json``: the job's final word when the runner could not give it; ``tracking.json``:
where collect logged the result), and :func:`load_result`, the one reader everybody uses
(dispatch status, collect, reports, sweeps), merges them. Every file is written atomically
(:mod:`harness.jsonfile`) and with credentials in URIs redacted.
"""

from __future__ import annotations

import json
import logging
import os
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.jsonfile import write_json_atomic
from harness.redact import redact_values

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
OUTCOME_FILE = "outcome.json"  # the job's final word (the last time-out, a failure outside the runner)
TRACKING_FILE = "tracking.json"  # where `harness collect` logged the result
# a cell's result is read from these together, and a retry moves them aside together
RESULT_FILES = (RESULT_FILE, OUTCOME_FILE, TRACKING_FILE)
SPACE_RESERVE = ".space-reserve"  # freed for the final result.json when the disk is full
SPACE_RESERVE_BYTES = 1 << 20

# diverged: training stopped at a non-finite or exploded loss (harness.train.divergence); the
# cell has no metrics, and the same settings diverge again. paused: stopped at a rung (run_cell's
# stop_at_step) with its checkpoint kept; not a failure, and running the cell again continues it
Status = Literal["success", "failed", "diverged", "oom", "timeout", "cancelled", "paused", "running"]
PAUSED: Final = "paused"
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
    # sampled once per optimizer step (the train phase), as peft's method_comparison records it:
    # the torch allocator's reserved memory on a GPU ("reserved"), the process RSS on a CPU ("rss")
    step_memory_measure: str | None = None
    step_memory_avg_bytes: float | None = None
    step_memory_p99_bytes: float | None = None
    step_memory_max_bytes: int | None = None
    # CPU time of this process and its children during the phase (user + system, core-seconds)
    cpu_s: float | None = None


class RankStats(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rank: int
    node: int
    host: str
    peak_bytes: int | None = None  # the torch allocator's peak on the rank's GPU, else the process's peak RSS
    measure: str = "rss"  # gpu | rss
    train_cpu_s: float | None = None  # the rank's CPU time in the train phase (core-seconds)


class Cost(BaseModel):
    """What a cell cost to compute (harness.cell.measure.compute_cost): device-seconds per phase and
    in all, so that a report can give the cost of a row, a sweep and a matrix. On a GPU,
    GPU-seconds: the phase's wall time x the GPUs the cell holds; on a CPU, core-seconds: the CPU
    time of the cell's processes (every rank's in a distributed train phase)."""

    model_config = ConfigDict(extra="forbid")
    measure: Literal["gpu_seconds", "core_seconds"]
    device_s: float = 0.0
    phases: dict[str, float] = Field(default_factory=dict)
    wall_s: float = 0.0
    energy_j: float | None = None  # NVML, every node's devices (None without NVML)


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
    cost: Cost | None = None  # None: a result from before costs were recorded


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
    # None: the method does not train (zero-shot records no training batch)
    per_device_batch: int | None = 0  # train.batch_size / world size
    effective_batch: int | None = 0  # per-device batch x world size x grad_accum


class Divergence(BaseModel):
    """Where training diverged (status ``diverged``), by the rule of :mod:`harness.train.divergence`."""

    model_config = ConfigDict(extra="forbid")
    step: int  # the optimizer step whose loss diverged; its update was not applied
    loss: float  # that step's loss: NaN, inf, or the exploded value
    last_finite_loss: float | None = None  # the step before's loss (None: the first step diverged)
    reference: float | None = None  # the explosion rule's reference loss (None: the first step)
    rule: str  # non-finite | explosion


class Forgetting(BaseModel):
    """``data.forgetting``: peft's forgetting metric (harness.tasks.forgetting). The mean per-token
    cross-entropy (nats) on a general-text sample of the base model (``before``: the adapter
    disabled, or before training for a model trained whole) and of the trained model (``after``);
    ``metrics["forgetting"]`` is after - before. A head with no language-model loss records why
    (``not_applicable``) and no figures."""

    model_config = ConfigDict(extra="forbid")
    sample: str  # data.forgetting.sample: a bundled sample's name, finewiki, or a file's path
    source: str | None = None  # "sha256:<hex>" of the local file read, or "hf:<dataset id>"
    articles: int | None = None  # articles scored (the sample may hold fewer than asked for)
    max_tokens: int
    tokens: int | None = None  # tokens scored, each pass
    before: float | None = None
    after: float | None = None
    not_applicable: str | None = None  # e.g. "classification head": no language-model loss


class Rung(BaseModel):
    """A stop of a cell planned for its full budget (run_cell's ``stop_at_step``): the model as it
    was at ``step``, evaluated on the cell's evaluation split. ``wall_s`` and ``device_s`` count
    every run of the cell up to this rung (``efficiency.cost``'s measure)."""

    model_config = ConfigDict(extra="forbid")
    step: int
    metrics: dict[str, float] = Field(default_factory=dict)
    wall_s: float = 0.0
    device_s: float = 0.0


class ReusedFrom(BaseModel):
    """A sweep's stage-2 first seed that evaluated the stage-1 winner's trained weights instead of
    training them again (harness.cell.reuse): which cell trained them, where, and what that
    training cost (``device_s``, counted in the winner's result: the report counts it once)."""

    model_config = ConfigDict(extra="forbid")
    cell_id: str
    folder: str
    device_s: float | None = None


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
    divergence: Divergence | None = None  # status diverged: where and why
    rungs: list[Rung] = Field(default_factory=list)  # the steps it stopped at (status paused), in order
    # the training it reused (its training figures are copied from there; its cost is its evaluation)
    reused_from: ReusedFrom | None = None
    retrained: str | None = None  # why a cell asked to reuse a run trained instead
    forgetting: Forgetting | None = None  # data.forgetting: the losses it is computed from
    metrics: dict[str, float] = Field(default_factory=dict)  # quality: rouge1, accuracy, f1_macro, ...
    reports: dict[str, Any] = Field(default_factory=dict)  # per-class report, confusion matrix
    efficiency: Efficiency = Field(default_factory=Efficiency)
    telemetry: dict[str, Any] = Field(default_factory=dict)  # per-phase summaries, see harness.telemetry
    environment: dict[str, Any] = Field(default_factory=dict)
    # what the cell read, by content: {"model": its Hub revision or its files' sha256, "data":
    # split -> the file's sha256 or the Hub dataset and revision} (harness.cell.inputs)
    inputs: dict[str, Any] = Field(default_factory=dict)
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


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JobOutcome(BaseModel):
    """``outcome.json``: how the job ended a cell whose runner could not say (its last time-out
    or preemption, a failure before or outside the runner). Read over a result.json that is
    missing or still "running"; a final result.json (the runner's own word) wins."""

    model_config = ConfigDict(extra="forbid")
    cell_id: str
    status: Status
    error: str | None = None
    traceback: str | None = None
    config: dict[str, Any]  # the result's config when the runner wrote none
    started_at: str = Field(default_factory=lambda: now_iso())
    finished_at: str = Field(default_factory=lambda: now_iso())


class CollectedTracking(BaseModel):
    """``tracking.json``: where ``harness collect`` logged a result, for that result only."""

    model_config = ConfigDict(extra="forbid")
    started_at: str  # of the result it was logged from: a later run of the cell makes this stale
    tracking: TrackingStatus


class ResultFile:
    """A cell folder's result: ``result.json`` and the small files that complete it.

    The cell's life-cycle: :meth:`reserve` space, :meth:`begin` ("running"; an earlier run's
    companions go), :meth:`write` updates, :meth:`finish` (the final word, even on a full
    disk), :meth:`note_tracking`, :meth:`release`. The job writes :meth:`end_job`, collect
    :meth:`note_collected`; :meth:`load` merges them all.
    """

    def __init__(self, cell_dir: Path) -> None:
        self.cell_dir = Path(cell_dir)
        self.path = self.cell_dir / RESULT_FILE

    # ------------------------------------------------------------ the cell's writes

    def reserve(self) -> None:
        """Set aside room for the final result.json: if the disk fills while the cell runs, the
        reserve is freed and the result still says what happened (instead of staying "running").
        Raises OSError when the folder cannot be written."""
        reserve = self.cell_dir / SPACE_RESERVE
        try:
            with reserve.open("wb") as handle:
                handle.write(b"\0" * SPACE_RESERVE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            reserve.unlink(missing_ok=True)
            raise

    def release(self) -> None:
        (self.cell_dir / SPACE_RESERVE).unlink(missing_ok=True)

    def begin(self, result: Result) -> None:
        """The first write of a run ("running"); what an earlier run's job or collect left goes."""
        for name in (OUTCOME_FILE, TRACKING_FILE):
            (self.cell_dir / name).unlink(missing_ok=True)
        self.write(result)

    def write(self, result: Result) -> None:
        _write(self.path, result.model_dump(mode="json"))

    def finish(self, result: Result) -> None:
        """The last write; on a full disk, free the reserve, record why (a success or a running
        result becomes "failed"), write again."""
        try:
            self.write(result)
            return
        except OSError as error:
            self.release()
            log.error("could not write %s (%s); freed the space reserve", RESULT_FILE, error)
            if result.status in ("success", "running"):
                result.status = "failed"
            result.error = result.error or f"{type(error).__name__}: {error}"
        self.write(result)

    def note_tracking(self, result: Result) -> None:
        """Rewrite result.json with its tracking outcome; the final one is on disk already."""
        try:
            self.write(result)
        except OSError as error:
            log.warning("could not record the tracking outcome in %s: %s", RESULT_FILE, error)

    # ------------------------------------------------------------ the job's and collect's

    def end_job(self, outcome: JobOutcome) -> None:
        """The job's final word, unless the runner has given its own."""
        try:
            current = self.read()
        except CorruptState:  # unreadable: the outcome stands in for it
            current = None
        if current is not None and current.status in FINAL_STATUSES:
            return
        _write(self.cell_dir / OUTCOME_FILE, outcome.model_dump(mode="json"))

    def note_collected(self, result: Result, tracking: TrackingStatus) -> None:
        """Where collect logged ``result`` (the collect digest ignores the tracking section)."""
        try:
            _write(
                self.cell_dir / TRACKING_FILE,
                CollectedTracking(started_at=result.started_at, tracking=tracking).model_dump(mode="json"),
            )
        except OSError:
            log.warning("could not record the MLflow run in %s", self.cell_dir / TRACKING_FILE)

    # ------------------------------------------------------------ reading

    def exists(self) -> bool:
        # lexists: a dangling result.json symlink is a result that cannot be read, not no result
        return os.path.lexists(self.path) or os.path.lexists(self.cell_dir / OUTCOME_FILE)

    def read(self) -> Result | None:
        """The merged result, validated; None when the folder holds none. Raises
        :class:`CorruptState` naming the file that is not what the harness wrote (the folder
        itself, result.json, outcome.json or tracking.json)."""
        check_folder(self.cell_dir)
        outcome = read_state(self.cell_dir / OUTCOME_FILE, JobOutcome)
        try:
            result = _validated(read_json_state(self.path), self.path)
        except CorruptState:
            if outcome is None:
                raise
            result = None  # the job's outcome stands in for a result.json it cannot be read over
        if outcome is not None and (result is None or result.status not in FINAL_STATUSES):
            result = _with_outcome(result, outcome)
        collected = read_state(self.cell_dir / TRACKING_FILE, CollectedTracking)
        if result is not None and collected is not None and collected.started_at == result.started_at:
            result.tracking = collected.tracking
        return result

    def peek(self) -> dict[str, Any] | None:
        """The merged result as plain JSON; None when there is none. Raises CorruptState."""
        result = self.read()
        return None if result is None else result.model_dump(mode="json")

    def load(self) -> Result:
        result = self.read()
        if result is None:
            raise FileNotFoundError(f"{self.path}: no result")
        return result


def _write(path: Path, payload: dict[str, Any]) -> None:
    # redacted whichever field carries a credential: a tracking URI's password never reaches a file
    write_json_atomic(path, redact_values(payload))


def _with_outcome(result: Result | None, outcome: JobOutcome) -> Result:
    """The job's final word over what the runner recorded (or over nothing)."""
    if result is None:
        fields = ("cell_id", "status", "error", "traceback", "config", "started_at", "finished_at")
        return Result(**{key: getattr(outcome, key) for key in fields})
    return result.model_copy(
        update={key: getattr(outcome, key) for key in ("status", "error", "traceback", "finished_at")}
    )


def _validated(data: dict[str, Any] | None, path: Path) -> Result | None:
    """``data`` (a result file's JSON, None: no file) as a Result, or CorruptState."""
    if data is None:
        return None
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CorruptState(path, f"result schema version {version!r}, this harness reads {SCHEMA_VERSION}")
    return validated(data, Result, path)


def write_result(cell_dir: Path, result: Result) -> Path:
    """result.json as it stands (tests and tools that set a folder up); a cell uses ResultFile."""
    file = ResultFile(cell_dir)
    file.write(result)
    return file.path


def has_result(cell_dir: Path) -> bool:
    """Whether the folder holds a result (result.json, or the job's outcome without one)."""
    return ResultFile(cell_dir).exists()


def load_result(cell_dir_or_file: Path) -> Result:
    """A cell folder's result, its companions merged; or one result file as it is (a result.json
    downloaded from MLflow). Raises FileNotFoundError, or CorruptState (a ValueError: a file that
    is not a result of this schema version)."""
    path = Path(cell_dir_or_file)
    if path.suffix != ".json":
        return ResultFile(path).load()
    if path.name == RESULT_FILE:
        return ResultFile(path.parent).load()
    result = _validated(read_json_state(path), path)
    if result is None:
        raise FileNotFoundError(f"{path}: no result")
    return result


# --------------------------------------------------------------------------- state files, read defensively

# No file the harness writes comes near this (a result's loss history of 10^5 steps is a few MB):
# a larger one is not read at all, so a stray multi-GB file costs nothing
STATE_MAX_BYTES = 64 << 20
_MAX_REASON = 200

Model = TypeVar("Model", bound=BaseModel)


# the state of a cell (or a sweep point) one of whose files is not what the harness wrote
CORRUPT: Final = "corrupt"


class CorruptState(ValueError):
    """A file the harness reads back (a cell folder's result.json, outcome.json, tracking.json,
    job.json, run.json or checkpoint, a matrix's stage2.json, the cell folder itself) that is not
    what the harness writes there: not a file, not UTF-8 JSON, not its schema. ``str()`` is the
    one line ``corrupt: <file>: <reason>``: the cell's status is ``corrupt`` (status, plan,
    report), and ``harness matrix --retry-failed`` runs it again, moving the file aside."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        reason = " ".join(reason.split())  # one line, whatever the OS or a parser said
        self.reason = reason if len(reason) <= _MAX_REASON else reason[:_MAX_REASON] + "\u2026"
        super().__init__(f"corrupt: {self.path.name}: {self.reason}")


def check_folder(folder: Path) -> None:
    """CorruptState when a cell folder is there but is not a folder (a dangling symlink, a file);
    nothing when it is a folder or is not there at all."""
    if folder.is_dir() or not os.path.lexists(folder):
        return
    if folder.is_symlink():
        raise CorruptState(folder, f"a symlink to {os.readlink(folder)} that leads to no folder")
    raise CorruptState(folder, "not a folder")


def read_json_state(path: Path) -> dict[str, Any] | None:
    """The JSON object a state file holds (every one holds an object); None when there is no such
    file. Raises :class:`CorruptState` when it is there but is not a regular file of at most
    STATE_MAX_BYTES of UTF-8 JSON holding an object."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # no file (a folder that is a file: check_folder)
        if path.is_symlink():
            raise CorruptState(path, f"a symlink to {os.readlink(path)} that leads to no file") from None
        return None
    except OSError as error:  # a symlink loop, no permission
        raise CorruptState(path, error.strerror or str(error)) from None
    if not os.path.isfile(path):
        raise CorruptState(path, "a directory, not a file" if path.is_dir() else "not a regular file")
    if info.st_size > STATE_MAX_BYTES:
        raise CorruptState(path, f"{info.st_size:,} bytes, more than a state file's {STATE_MAX_BYTES:,}")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:  # removed since: a retry moved it aside
        return None
    except OSError as error:
        raise CorruptState(path, error.strerror or str(error)) from None
    except UnicodeDecodeError as error:
        raise CorruptState(path, f"not UTF-8 text (byte {error.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptState(path, f"not JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    except RecursionError:
        raise CorruptState(path, "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise CorruptState(path, f"a JSON {_JSON_KINDS.get(type(data), type(data).__name__)}, not an object")
    return data


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def validated(data: Any, model: type[Model], path: Path) -> Model:
    """``data`` read from ``path`` as ``model``, or CorruptState naming the first field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = error.errors()
        first = errors[0] if errors else {"loc": (), "msg": str(error)}
        where = ".".join(str(part) for part in first["loc"])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CorruptState(path, f"{where + ': ' if where else ''}{first['msg']}{more}") from None
    except RecursionError:
        raise CorruptState(path, "nested too deeply") from None


def read_state(path: Path, model: type[Model]) -> Model | None:
    """A state file as ``model``; None when there is no such file; CorruptState when it is not one."""
    data = read_json_state(path)
    return None if data is None else validated(data, model, path)


def move_aside(path: Path) -> Path:
    """Rename a corrupt file (or folder, or symlink) to ``<name>.corrupt`` beside it (then
    ``.corrupt-2``, ...): kept for a look, out of the way of the run that replaces it."""
    target = path.with_name(f"{path.name}.corrupt")
    index = 1
    while os.path.lexists(target):
        index += 1
        target = path.with_name(f"{path.name}.corrupt-{index}")
    os.rename(path, target)
    return target
