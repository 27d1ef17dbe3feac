"""Rows of a report: one per cell, from its ``result.json`` (or an MLflow run).

A row is read from the typed :class:`~harness.result.Result` (``row_from_result``); an
MLflow run is read through the same function from its logged ``result.json``, and only a run
without one falls back to its flat metric names (``row_from_flat``).
The settings a cell ran with (rank, learning rate) come from its result's ``run`` record only:
where there is none (an old result, an MLflow run without its result.json, a cell that has not
run), they are "not recorded", never re-derived from today's defaults.
Cells that did not finish are rows too (status ``failed``/``diverged``/``oom``/...), and so are cells
that never wrote a result (``missing``): the tables mark them instead of dropping them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.dispatch.cell_state import CORRUPT
from harness.errors import error_line
from harness.methods.registry import known_method
from harness.result import RESULT_FILE, CorruptState, Result, ResultFile, RunRecord
from harness.tasks.kinds import SCORINGS

# status of a cell that has no result.json / whose result.json cannot be read
MISSING = "missing"
UNREADABLE = "unreadable"
# a setting of what ran that the cell's result does not record (it has no run record)
NOT_RECORDED = "not recorded"
WHOLE_MODEL_RANK = "all"  # the rank shown for a method that trains every weight
# the peft method_comparison/MetaMathQA experiment a cell reproduces, a config tag ("<method>--<name>",
# its result file's stem, or "<method>/<name>"): a matrix sets it per axis entry
# (set: {tags: {peft_experiment: ...}}); harness report --peft-results sets the cell beside that file
PEFT_EXPERIMENT_TAG = "peft_experiment"
FORGETTING = "forgetting"  # result.json metrics["forgetting"]: after - before cross-entropy (nats)

# quality figures per scoring, in table order (classification is macro-averaged), and the figure
# the Pareto plots and "improvement over zero-shot" use: from the task kinds' registry
QUALITY: dict[str, tuple[str, ...]] = {name: scoring.columns for name, scoring in SCORINGS.items()}
HEADLINE: dict[str, str] = {name: scoring.headline for name, scoring in SCORINGS.items()}


@dataclass
class CellRow:
    """One cell's figures, as the report uses them. Missing figures are None."""

    cell_id: str
    task: str
    model: str
    method: str
    seed: int
    status: str  # a Result status, or "missing" / "unreadable" (an MLflow run) / "corrupt" (a cell folder)
    scoring: str = "classification"  # the task's scoring (harness.tasks.kinds.SCORINGS): rouge | classification | ...
    classes: int | None = None  # classification: the task's number of labels
    error: str | None = None
    folder: str | None = None
    source: str = "file"  # file | mlflow
    metrics: dict[str, float] = field(default_factory=dict)  # quality figures, as in result.json
    trainable_params: int | None = None
    total_params: int | None = None
    trainable_share: float | None = None
    # the result has a run record (what ran): rank and learning rate are read from it; without one
    # they are NOT_RECORDED (the rank) and None, whatever today's defaults say
    run_recorded: bool = False
    rank: str | None = None  # "8", "12→8" (AdaLoRA init→target), "200 tokens", "all", "not recorded"
    learning_rate: float | None = None  # None: the method does not train, or not recorded
    # Peak memory per phase and its measure: the torch allocator's peak on a GPU ("gpu"), the
    # process RSS on a CPU ("rss")
    train_peak_bytes: float | None = None
    train_peak_measure: str | None = None
    eval_peak_bytes: float | None = None
    eval_peak_measure: str | None = None
    gpu_mem_used_peak_bytes: float | None = None  # NVML, whole device(s), train phase
    train_energy_j: float | None = None  # NVML telemetry; None without a GPU
    eval_energy_j: float | None = None
    train_samples_per_s: float | None = None
    train_tokens_per_s: float | None = None
    mfu: float | None = None  # model FLOPs utilisation (GPU runs on a device with a known bf16 peak)
    train_wall_s: float | None = None
    eval_wall_s: float | None = None
    compile_s: float | None = None  # train.compile: the compiling first step, kept out of the throughput
    # (optimizer step, training loss), from result.json; empty for an MLflow run without one
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    eval_loss_history: list[tuple[int, float]] = field(default_factory=list)  # train.eval_every
    # classification: {class name: examples of it in the evaluation set}, from the confusion matrix
    class_counts: dict[str, int] = field(default_factory=dict)
    # a sweep's cells (harness.matrix.sweep): select (stage 1, scored on the selection split) or
    # final (stage 2); the swept values it ran with; how its selection is made (metric/split/mode)
    stage: str | None = None
    point: dict[str, Any] = field(default_factory=dict)
    select: str | None = None
    # a labelled configuration of its method (a matrix's {name: label, method: ...}): shown apart
    variant: str | None = None
    # the local data files' content the cell read (a digest of config.data.source.sha256); None:
    # bundled or Hub data, or a result from before data files were hashed
    data_version: str | None = None
    # what the cell ran under (result.json's environment): the package versions that decide a
    # result, and whether the harness's tree had uncommitted changes (None: not known)
    packages: dict[str, str | None] = field(default_factory=dict)
    git_dirty: bool | None = None
    # what the cell cost (result.json's efficiency.cost): device-seconds and their measure
    # (gpu_seconds | core_seconds); None: a result from before costs were recorded
    device_s: float | None = None
    cost_measure: str | None = None
    # a sweep's stage-2 first seed that reused the stage-1 winner's run (result.json's reused_from):
    # what that training cost, counted in the winner's row, not this one's
    reused_device_s: float | None = None
    # a halving sweep's grid point (result.json's rungs): (step, metrics on the selection split) at
    # each rung it stopped at, in order ([]: no halving, or it never stopped), and its full budget
    rungs: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    max_steps: int | None = None
    # peft's benchmark: the experiment a cell reproduces (its config tag PEFT_EXPERIMENT_TAG), its
    # forgetting (result.json metrics["forgetting"]) and the train phase's per-step memory samples
    peft_experiment: str | None = None
    forgetting: float | None = None
    # why the cell has no forgetting figure although data.forgetting asked for one (result.json's
    # forgetting.not_applicable: "classification head"); the report shows "n/a (<why>)"
    forgetting_not_applicable: str | None = None
    train_step_memory_measure: str | None = None
    train_step_memory_avg_bytes: float | None = None
    train_step_memory_p99_bytes: float | None = None
    train_step_memory_max_bytes: float | None = None

    @property
    def finished(self) -> bool:
        return self.status == "success"

    @property
    def label(self) -> str:
        return f"{self.task}/{self.model}/{self.method}/seed{self.seed}"


def task_scoring(config: Mapping[str, Any]) -> tuple[str, int | None]:
    """(scoring, number of classes) of a cell's task, bundled or defined in its matrix."""
    try:
        from harness.tasks.registry import task_of

        task = task_of(dict(config))
        return task.scoring, len(task.label_names) or None
    except Exception:  # noqa: BLE001 - an unknown task is still reported
        return "classification", None


def data_version(config: Mapping[str, Any]) -> str | None:
    """A short digest of the data files a cell read (their sha256 per split), or None."""
    source = (config.get("data") or {}).get("source") or {}
    hashes = source.get("sha256") if isinstance(source, Mapping) else None
    if not hashes:
        return None
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:8]


def separate_data_versions(rows: list[CellRow]) -> list[CellRow]:
    """Rows of one task that read different versions of its data files (a file edited between
    runs, all of them logged to one experiment) are never averaged into one row: each version
    becomes its own task, named ``task [data <digest>]``."""
    versions: dict[str, set[str | None]] = {}
    for row in rows:
        versions.setdefault(row.task, set()).add(row.data_version)
    for row in rows:
        if len(versions[row.task]) > 1:
            row.task = f"{row.task} [data {row.data_version or 'unhashed'}]"
    return rows


def sweep_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """From its config's tags: a sweep cell's stage, swept values and selection rule, and the label
    of a method's configuration (its variant)."""
    from harness.names import SELECT_STAGE, SELECT_TAG, SELECTED_TAG, STAGE_TAG, SWEEP_TAG, VARIANT_TAG

    tags = config.get("tags") or {}
    variant = {"variant": str(tags[VARIANT_TAG])} if tags.get(VARIANT_TAG) else {}
    stage = tags.get(STAGE_TAG)
    if not stage:
        return variant
    tag = tags.get(SWEEP_TAG if stage == SELECT_STAGE else SELECTED_TAG)
    try:
        point = json.loads(tag) if tag else {}
    except ValueError:
        point = {}
    return {
        "stage": stage,
        "point": point if isinstance(point, dict) else {},
        "select": tags.get(SELECT_TAG),
        **variant,
    }


def rank_from_run(run: RunRecord, method: str) -> str | None:
    """The rank of a cell as its run record has it (the resolved peft config, defaults included)."""
    spec = known_method(method)
    if spec is not None and spec.whole_model:
        return WHOLE_MODEL_RANK
    return _rank(run.peft_config) if run.peft_config else None


def _rank(args: Mapping[str, Any]) -> str | None:
    if "init_r" in args or "target_r" in args:
        return f"{args.get('init_r', '?')}→{args.get('target_r', '?')}"
    if "r" in args:
        return str(args["r"])
    if "num_virtual_tokens" in args:
        return f"{args['num_virtual_tokens']} tokens"
    return None


def unrecorded_rank(method: str) -> str | None:
    """The rank of a cell without a run record: what its method says by itself (full fine-tuning
    trains all weights, zero-shot trains none), else NOT_RECORDED."""
    spec = known_method(method)
    if spec is not None and spec.whole_model:
        return WHOLE_MODEL_RANK
    if spec is not None and not spec.trains:
        return None
    return NOT_RECORDED


def _number(flat: Mapping[str, Any], key: str) -> float | None:
    value = flat.get(key)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _peak(flat: Mapping[str, Any], phase: str) -> tuple[float | None, str | None]:
    gpu = _number(flat, f"eff/{phase}/peak_allocated_bytes")
    if gpu is not None:
        return gpu, "gpu"
    rss = _number(flat, f"eff/{phase}/peak_rss_bytes")
    return (rss, "rss") if rss is not None else (None, None)


def row_from_flat(
    *,
    cell_id: str,
    status: str,
    config: Mapping[str, Any],
    flat: Mapping[str, Any],
    error: str | None = None,
    folder: str | None = None,
    source: str = "file",
    run: RunRecord | None = None,
) -> CellRow:
    """Build a row from MLflow-style metric names (``eff/...``, ``gpu/<phase>/...``) and a config:
    an MLflow run without its result.json (its params may hold the run record: ``run``), or a
    cell without a result (placeholder). Without a run record, rank and learning rate are not
    recorded."""
    task, method = str(config.get("task")), str(config.get("method"))
    scoring, classes = task_scoring(config)
    trained = _number(flat, "eff/train/wall_s") is not None
    train_peak, train_measure = _peak(flat, "train")
    eval_peak, eval_measure = _peak(flat, "eval")
    trainable = _number(flat, "eff/trainable_params")
    total = _number(flat, "eff/total_params")
    share = _number(flat, "eff/trainable_share")
    return CellRow(
        cell_id=cell_id,
        task=task,
        model=str(config.get("model")),
        method=method,
        seed=int(config.get("seed") or 0),
        status=status,
        scoring=scoring,
        classes=classes,
        error=error,
        folder=folder,
        source=source,
        metrics={k: float(flat[k]) for k in QUALITY.get(scoring, ()) if _number(flat, k) is not None},
        # a failed cell may never have counted its parameters (the defaults are 0)
        trainable_params=int(trainable) if trainable is not None and (total or 0) > 0 else None,
        total_params=int(total) if total else None,
        trainable_share=share if total else None,
        run_recorded=run is not None,
        rank=rank_from_run(run, method) if run else unrecorded_rank(method),
        learning_rate=run.learning_rate if run else None,
        train_peak_bytes=train_peak if trained else None,
        train_peak_measure=train_measure if trained else None,
        eval_peak_bytes=eval_peak,
        eval_peak_measure=eval_measure,
        gpu_mem_used_peak_bytes=_number(flat, "gpu/train/mem_used_peak_bytes"),
        train_energy_j=_number(flat, "gpu/train/energy_j"),
        eval_energy_j=_number(flat, "gpu/eval/energy_j"),
        train_samples_per_s=_number(flat, "eff/train_samples_per_s"),
        train_tokens_per_s=_number(flat, "eff/train_tokens_per_s"),
        mfu=_number(flat, "eff/mfu"),
        train_wall_s=_number(flat, "eff/train/wall_s"),
        eval_wall_s=_number(flat, "eff/eval/wall_s"),
        compile_s=_number(flat, "eff/compile_s"),
        data_version=data_version(config),
        peft_experiment=peft_experiment(config),
        forgetting=_number(flat, FORGETTING),
        **sweep_fields(config),
    )


def row_from_result(result: Result, folder: Path | str | None = None, source: str = "file") -> CellRow:
    """A row read from the typed result: its metrics, efficiency and telemetry fields, and its
    ``run`` record (what ran: rank from the resolved peft config, the learning rate used)."""
    scoring, classes = task_scoring(result.config)
    eff, run, method = result.efficiency, result.run, result.method
    gpu = {k: float(v) for k, v in (result.telemetry.get("metrics") or {}).items() if isinstance(v, (int, float))}
    train_peak, train_measure = _phase_peak(result, "train")
    eval_peak, eval_measure = _phase_peak(result, "eval")
    counted = eff.total_params > 0  # a failed cell may never have counted its parameters
    return CellRow(
        cell_id=result.cell_id,
        task=result.task,
        model=result.model,
        method=method,
        seed=result.seed,
        status=result.status,
        scoring=scoring,
        classes=classes,
        error=result.error.splitlines()[0] if result.error else None,
        folder=str(folder) if folder else None,
        source=source,
        metrics={k: float(result.metrics[k]) for k in QUALITY.get(scoring, ()) if k in result.metrics},
        trainable_params=eff.trainable_params if counted else None,
        total_params=eff.total_params if counted else None,
        trainable_share=eff.trainable_share if counted else None,
        run_recorded=run is not None,
        rank=rank_from_run(run, method) if run else unrecorded_rank(method),
        learning_rate=run.learning_rate if run else None,
        train_peak_bytes=train_peak,
        train_peak_measure=train_measure,
        eval_peak_bytes=eval_peak,
        eval_peak_measure=eval_measure,
        gpu_mem_used_peak_bytes=gpu.get("gpu/train/mem_used_peak_bytes"),
        train_energy_j=gpu.get("gpu/train/energy_j"),
        eval_energy_j=gpu.get("gpu/eval/energy_j"),
        train_samples_per_s=eff.train_samples_per_s,
        train_tokens_per_s=eff.train_tokens_per_s,
        mfu=eff.mfu,
        train_wall_s=eff.phases["train"].wall_s if "train" in eff.phases else None,
        eval_wall_s=eff.phases["eval"].wall_s if "eval" in eff.phases else None,
        compile_s=eff.compile_s,
        loss_history=[(int(step), float(loss)) for step, loss in eff.loss_history],
        eval_loss_history=[(int(step), float(loss)) for step, loss in eff.eval_loss_history],
        class_counts=_class_counts(result.reports),
        data_version=data_version(result.config),
        packages=dict(result.environment.get("packages") or {}),
        git_dirty=result.environment.get("git_dirty"),
        device_s=eff.cost.device_s if eff.cost else None,
        cost_measure=eff.cost.measure if eff.cost else None,
        reused_device_s=result.reused_from.device_s if result.reused_from else None,
        rungs=[(r.step, dict(r.metrics)) for r in result.rungs],
        max_steps=_max_steps(result.config),
        peft_experiment=peft_experiment(result.config),
        forgetting=_number(result.metrics, FORGETTING),
        forgetting_not_applicable=result.forgetting.not_applicable if result.forgetting else None,
        **_step_memory(result),
        **sweep_fields(result.config),
    )


def _max_steps(config: Mapping[str, Any]) -> int | None:
    steps = (config.get("train") or {}).get("max_steps")
    return int(steps) if isinstance(steps, int) else None


def peft_experiment(config: Mapping[str, Any]) -> str | None:
    """The peft benchmark experiment a cell reproduces, from its config's tags (None: not tagged)."""
    tag = (config.get("tags") or {}).get(PEFT_EXPERIMENT_TAG)
    return str(tag) if tag else None


def _step_memory(result: Result) -> dict[str, Any]:
    stats = result.efficiency.phases.get("train")
    if stats is None or stats.step_memory_measure is None:
        return {}
    return {
        "train_step_memory_measure": stats.step_memory_measure,
        "train_step_memory_avg_bytes": stats.step_memory_avg_bytes,
        "train_step_memory_p99_bytes": stats.step_memory_p99_bytes,
        "train_step_memory_max_bytes": stats.step_memory_max_bytes,
    }


def _class_counts(reports: Mapping[str, Any]) -> dict[str, int]:
    """Reference counts per class: the rows of the confusion matrix (true class x predicted)."""
    confusion = reports.get("confusion_matrix") or {}
    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    return {str(name): int(sum(row)) for name, row in zip(labels, matrix)}


def _phase_peak(result: Result, phase: str) -> tuple[float | None, str | None]:
    """Peak memory of a phase: the torch allocator's on a GPU, else the process RSS."""
    stats = result.efficiency.phases.get(phase)
    if stats is None:
        return None, None
    if stats.peak_allocated_bytes is not None:
        return float(stats.peak_allocated_bytes), "gpu"
    return (float(stats.peak_rss_bytes), "rss") if stats.peak_rss_bytes is not None else (None, None)


def placeholder_row(config: Any, cell_id: str, status: str, error: str | None = None) -> CellRow:
    """A row for a cell without a readable result: what the matrix says it is."""
    data = config.model_dump(mode="json")
    return row_from_flat(
        cell_id=cell_id, status=status, config=data, flat={}, error=error, folder=str(config.output_dir)
    )


def rows_from_matrix(matrix: Any) -> list[CellRow]:
    """One row per active (not excluded) cell of an expanded matrix, from the cell folders; a
    cell whose result cannot be read is a row of status ``corrupt`` with its one line."""
    rows = []
    for cell in matrix.active:
        folder = Path(cell.folder)
        try:
            result = ResultFile(folder).read()
        except CorruptState as error:
            rows.append(placeholder_row(cell.config, cell.cell_id, CORRUPT, str(error)))
            continue
        if result is None:
            rows.append(placeholder_row(cell.config, cell.cell_id, MISSING))
            continue
        try:
            rows.append(row_from_result(result, folder))
        except (TypeError, ValueError, AttributeError, KeyError) as error:  # a section the schema leaves open
            line = str(CorruptState(folder / RESULT_FILE, error_line(error)))
            rows.append(placeholder_row(cell.config, cell.cell_id, CORRUPT, line))
    return rows
