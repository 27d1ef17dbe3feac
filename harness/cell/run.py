"""Run one benchmark cell (model x method x task x seed) from its resolved config.

The only place that ties models, methods, tasks, train and telemetry together.

Features:
- validates everything (names, combination, data files, field mapping) before
  loading a model or writing a file: bad input raises ``ConfigError``;
- phases ``load``, ``train``, ``eval``, each with wall time and peak memory, stamped on
  the telemetry samples;
- resumes from the cell folder's latest checkpoint when one exists;
- writes ``result.json`` (the source of truth) before anything goes to MLflow, and
  again with the tracking outcome; a tracking failure leaves the cell successful;
- maps failures to a status: ``oom`` for out-of-memory, ``failed`` with traceback for
  any other exception. A preemption (``SystemExit``/``KeyboardInterrupt``) leaves the
  result ``running`` and the checkpoint in place for the requeued job.

Cell folder: ``config.yaml``, ``result.json``, ``log.txt``, ``predictions.jsonl``,
``adapter/`` (or ``model/`` for full fine-tuning), ``checkpoints/`` while running,
``telemetry.csv`` and ``timeline.png``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import folder_lock, preemption
from harness.config import CellConfig
from harness.errors import ConfigError
from harness.environment import environment
from harness.methods.build import (
    apply_method,
    check_combination,
    CountUnavailable,
    count_parameters,
    default_learning_rate,
    resolve_method_args,
    resolved_peft_config,
)
from harness.methods.registry import MethodSpec, resolve_method
from harness.models import ModelSpec, count_module_parameters, load_model, resolve_model
from harness.result import Result, RunRecord, now_iso, write_result
from harness.tasks import Formatter, TaskSpec, class_weights, head_for, load_split, task_of
from harness.train import distributed

log = logging.getLogger("harness.cell")

CHECKPOINT_DIR = "checkpoints"
SPACE_RESERVE = ".space-reserve"  # freed for the final result.json when the disk is full
SPACE_RESERVE_BYTES = 1 << 20


@dataclass
class CellPlan:
    """A cell with every name resolved and every input checked; nothing loaded yet."""

    config: CellConfig
    model: ModelSpec
    task: TaskSpec
    method: MethodSpec
    head: str
    method_args: dict[str, Any]
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    validation_rows: list[dict[str, Any]]  # train.eval_every's loss, while training


def prepare_cell(config: CellConfig) -> CellPlan:
    """Resolve and check a cell. Raises ConfigError with a one-line reason."""
    model = resolve_model(config.model)
    task = task_of(config)
    method = resolve_method(config.method)
    head = head_for(task, model.family, config.model)
    args = resolve_method_args(method, model.family, config.method_args)
    check_combination(config, method, model.family, head, args)
    if method.peft_type is not None:
        try:  # the method on the model's skeleton: target modules it lacks are refused here
            count_parameters(config)
        except CountUnavailable:
            pass  # built from the base weights: checked when the model is loaded
    data = config.data
    train_rows = load_split(task, data, data.train_split, data.max_train_samples, config.seed) if method.trains else []
    eval_rows = load_split(task, data, data.eval_split, data.max_eval_samples, config.seed)
    watched = method.trains and config.train.eval_every > 0
    validation_rows = load_split(task, data, data.validation_split, data.max_validation_samples, config.seed) if watched else []
    return CellPlan(config, model, task, method, head, args, train_rows, eval_rows, validation_rows)


def _resolve_precision(config: CellConfig, device: Any) -> tuple[str, Any]:
    import torch

    precision = config.train.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision != "fp32" and device.type != "cuda":
        raise ConfigError(f"train.precision {precision!r} needs a GPU; this run is on CPU (use fp32 or auto)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    return precision, dtype


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run_cell(config: CellConfig) -> Result:
    """Run the cell; return its result (also written to ``<output_dir>/result.json``).

    Raises ConfigError for bad input, before anything is written.
    """
    plan = prepare_cell(config)
    cell_dir = Path(config.output_dir)
    ctx = distributed.setup(config)  # train.distributed: this rank of the process group
    try:
        if not ctx.main:
            return _follow(plan, cell_dir)
        return _lead(plan, cell_dir)
    finally:
        distributed.teardown()


def _follow(plan: CellPlan, cell_dir: Path) -> Result:
    """A rank other than 0 of a distributed cell: train its share, write nothing but, on a
    failure, its traceback (``rank-<r>.error``), which rank 0 reports."""
    from harness.train import PhaseMeter

    config, ctx = plan.config, distributed.current()
    _quiet_libraries()
    result = Result(cell_id=config.cell_id, status="running", config=config.public_dump(), environment={})
    device = distributed.device()
    # one sampler per node: rank 0 samples its own; the first rank of every other node samples that
    # one into node-<k>/ and hands its summary to rank 0 after training
    sampler = None
    if ctx.samples_node and ctx.node > 0:
        (cell_dir / f"node-{ctx.node}").mkdir(parents=True, exist_ok=True)
        sampler = _start_sampler(config, cell_dir / f"node-{ctx.node}")
    try:
        _execute(plan, cell_dir, device, PhaseMeter(device), sampler, result)
    except Exception:
        distributed.record_error(cell_dir, traceback.format_exc())
        raise
    finally:
        if sampler is not None:
            sampler.stop()
    result.status = "success"
    return result


def _lead(plan: CellPlan, cell_dir: Path) -> Result:
    """The process that writes the cell: the only one, or rank 0."""
    try:
        acquired = folder_lock.acquire(cell_dir)  # before any write: one live writer per folder
    except OSError as error:
        raise ConfigError(f"output folder {cell_dir}: cannot write there ({error.strerror or error})") from None
    try:
        for stale in cell_dir.glob(distributed.ERROR_FILE.format(rank="*")):  # an earlier attempt's
            stale.unlink(missing_ok=True)
        _reserve_space(cell_dir)
        handler = _attach_log(cell_dir / "log.txt")
        try:
            return _run(plan, cell_dir)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
    finally:
        (cell_dir / SPACE_RESERVE).unlink(missing_ok=True)
        if acquired:
            folder_lock.release(cell_dir)


def _reserve_space(cell_dir: Path) -> None:
    """Set aside room for the final result.json: if the disk fills while the cell runs, the
    reserve is freed and the result still says what happened (instead of staying "running")."""
    try:
        with (cell_dir / SPACE_RESERVE).open("wb") as handle:
            handle.write(b"\0" * SPACE_RESERVE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        (cell_dir / SPACE_RESERVE).unlink(missing_ok=True)
        raise ConfigError(f"output folder {cell_dir}: cannot write there ({error.strerror or error})") from None


def _write_final(cell_dir: Path, result: Result) -> None:
    """The last write of result.json; on a full disk, free the reserve, record why, write again."""
    try:
        write_result(cell_dir, result)
        return
    except OSError as error:
        (cell_dir / SPACE_RESERVE).unlink(missing_ok=True)
        log.error("could not write result.json (%s); freed the space reserve", error)
        if result.status in ("success", "running"):
            result.status = "failed"
        result.error = result.error or f"{type(error).__name__}: {error}"
    write_result(cell_dir, result)


class _LogFile(logging.FileHandler):
    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """A line that cannot be written (a full disk) is dropped: the cell's result says what
        happened; logging's default would print a traceback to stderr for every line."""


def _attach_log(path: Path) -> logging.Handler:
    """log.txt gets the harness's own INFO lines and every library's warnings (on the root
    logger, so records that libraries keep off stderr, see ``harness/__init__``, land here)."""
    from harness.redact import RedactingFilter

    handler = _LogFile(path)
    handler.setLevel(logging.INFO)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("harness").setLevel(logging.INFO)
    return handler


def _run(plan: CellPlan, cell_dir: Path) -> Result:
    import torch

    config = plan.config
    _quiet_libraries()
    result = Result(cell_id=config.cell_id, status="running", config=config.public_dump(),
                    environment=environment())
    try:
        (cell_dir / "config.yaml").write_text(yaml.safe_dump(config.public_dump(), sort_keys=False))
        write_result(cell_dir, result)
    except OSError as error:
        result.status, result.error, result.finished_at = "failed", f"{type(error).__name__}: {error}", now_iso()
        _write_final(cell_dir, result)
        return result
    log.info("cell %s: %s / %s / %s / seed %d", config.cell_id, config.model, config.method, config.task, config.seed)

    device = distributed.device()
    sampler = _start_sampler(config, cell_dir)
    from harness.train import PhaseMeter

    meter = PhaseMeter(device)
    try:
        _execute(plan, cell_dir, device, meter, sampler, result)
        result.status = "success"
    except (torch.cuda.OutOfMemoryError, MemoryError) as error:
        result.status, result.error = "oom", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        result.traceback = traceback.format_exc()
        log.error("out of memory: %s", result.error)
    except Exception as error:  # noqa: BLE001 - any failure of this cell must end as a result, not a crash
        result.status, result.error = "failed", f"{type(error).__name__}: {error}"
        result.traceback = traceback.format_exc()
        for rank, text in distributed.rank_errors(cell_dir):  # another rank failed first: its error is the cause
            last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
            result.error = f"rank {rank} failed: {last}"
            result.traceback = f"rank {rank}:\n{text}\nrank 0 then:\n{result.traceback}"
            break
        log.error("cell failed: %s\n%s", result.error, result.traceback)
    finally:
        # Preemption (SystemExit) also passes here: stop the sampler, keep status "running".
        result.efficiency.phases = meter.phases
        _stop_sampler(sampler, result, cell_dir)
        result.efficiency.job_energy_j = _job_energy(result)
        result.finished_at = now_iso()
        _write_final(cell_dir, result)
    if result.status == "success":
        shutil.rmtree(cell_dir / CHECKPOINT_DIR, ignore_errors=True)
    _track(config, cell_dir, result)
    return result


def _execute(plan: CellPlan, cell_dir: Path, device: Any, meter: Any, sampler: Any, result: Result) -> None:
    import accelerate
    import torch
    import transformers

    from harness.tasks.evaluate import evaluate
    from harness.train import Trainer
    from harness.train.mfu import mfu, model_flops_per_token

    config, method = plan.config, plan.method
    precision, dtype = _resolve_precision(config, device)
    transformers.set_seed(config.seed)

    from harness.train import total_optimizer_steps

    def build() -> tuple[Any, Any, Any, list[Any], list[Any], int]:
        loaded = load_model(
            plan.model, plan.head,  # type: ignore[arg-type]
            num_labels=len(plan.task.label_names) or None, label_names=list(plan.task.label_names) or None,
            quantize_4bit=method.quantize_4bit, dtype=dtype, device=device, extra_kwargs=config.model_args,
            sharded=config.train.distributed == "fsdp",
        )
        formatter = Formatter(plan.task, plan.head, loaded.tokenizer, config.data)  # type: ignore[arg-type]
        train_examples = [formatter.encode(row) for row in plan.train_rows]
        eval_examples = [formatter.encode(row) for row in plan.eval_rows]
        total_steps = total_optimizer_steps(len(train_examples), config.train) if method.trains else 0
        model = apply_method(loaded.model, method, plan.head, plan.method_args, family=plan.model.family,
                             total_steps=total_steps, gradient_checkpointing=config.train.gradient_checkpointing,
                             quantized=loaded.quantized_4bit)
        return loaded, formatter, model, train_examples, eval_examples, total_steps

    _set_phase(sampler, "load")
    with meter.phase("load"):
        loaded, formatter, model, train_examples, eval_examples, total_steps = build()
        trainable, total = count_module_parameters(model)
    learning_rate = config.train.learning_rate or default_learning_rate(method)
    result.run = RunRecord(head=plan.head, family=plan.model.family, peft_config=resolved_peft_config(model),
                           learning_rate=learning_rate if method.trains else None,
                           total_steps=total_steps if method.trains else 0,
                           train_examples=len(train_examples), eval_examples=len(eval_examples),
                           **_batch_record(config))
    eff = result.efficiency
    eff.trainable_params, eff.total_params = trainable, total
    eff.trainable_share = trainable / total if total else 0.0
    log.info("parameters: %d trainable of %d (%.4f%%)", trainable, total, 100 * eff.trainable_share)

    if method.trains:
        accelerate.state.AcceleratorState._reset_state(reset_partial_state=True)
        accelerator = accelerate.Accelerator(
            mixed_precision="no" if precision == "fp32" else precision, cpu=device.type == "cpu"
        )
        weights = None
        if config.data.class_weighted_loss and plan.task.kind == "classification":
            weights = class_weights([int(r["label"]) for r in plan.train_rows], len(plan.task.label_names))
        trainer = Trainer(
            model, train_examples, head=plan.head, pad_id=formatter.pad, config=config.train, method=method,
            learning_rate=learning_rate, seed=config.seed,
            checkpoint_dir=cell_dir / CHECKPOINT_DIR, accelerator=accelerator, quantized=loaded.quantized_4bit,
            class_weights=weights, validation=[formatter.encode(row) for row in plan.validation_rows],
        )
        _set_phase(sampler, "train")
        with meter.phase("train"), preemption.checkpoint_callback(trainer.checkpoint_now):
            outcome = trainer.train()
        if trainer.ctx.active:
            _gather_rank_stats(device, sampler, eff)
        if trainer.fsdp:  # every rank gathers the whole weights; rank 0 evaluates an unsharded copy
            from harness.train import fsdp

            state = fsdp.full_model_state(trainer.model)
            if distributed.current().main:
                _, _, model, _, _, _ = build()
                model.load_state_dict(state, strict=False)
        if not distributed.current().main:
            return  # rank 0 saves the weights, evaluates and writes the result
        model = model if trainer.fsdp else accelerator.unwrap_model(trainer.model)
        # an optimizer hook may freeze parameters (LoRA-FA's A): count what trained
        trainable, total = count_module_parameters(model)
        eff.trainable_params, eff.trainable_share = trainable, trainable / total if total else 0.0
        seconds = max(outcome.train_seconds, 1e-9)
        eff.train_steps, eff.train_samples = outcome.steps, outcome.samples_this_run
        eff.train_samples_per_s = outcome.samples_this_run / seconds
        eff.train_tokens_per_s = outcome.real_tokens_this_run / seconds
        eff.compile_s = outcome.compile_s
        eff.model_flops_per_token = model_flops_per_token(total, trainable)
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        eff.mfu = mfu(eff.train_tokens_per_s, total, trainable, device_name)
        eff.padding_fraction = outcome.padding_fraction
        eff.final_train_loss = outcome.final_loss
        eff.resumed_from_step = outcome.resumed_from_step
        eff.loss_history = list(outcome.losses)
        eff.eval_loss_history = list(outcome.eval_losses)
        saved = _save_weights(model, loaded.tokenizer, method, cell_dir)
        result.artifacts[saved.name] = saved.name
        eff.adapter_bytes = _dir_size(saved)

    _set_phase(sampler, "eval")
    with meter.phase("eval"):
        evaluation = evaluate(model, formatter, eval_examples, data=config.data,
                              batch_size=config.train.eval_batch_size, device=device)
    result.metrics = evaluation.metrics
    result.reports = evaluation.reports
    with (cell_dir / "predictions.jsonl").open("w") as handle:
        for record in evaluation.predictions:
            handle.write(json.dumps(record) + "\n")
    result.artifacts["predictions"] = "predictions.jsonl"
    log.info("metrics: %s", {k: round(v, 4) for k, v in result.metrics.items()})


def _gather_rank_stats(device: Any, sampler: Any, eff: Any) -> None:
    """Every rank's peak memory, and every other node's telemetry, to rank 0 (a collective)."""
    from harness.result import RankStats

    ctx = distributed.current()
    summary = None
    if not ctx.main and sampler is not None:  # another node's sampler: its training is over
        sampler.stop()
        summary = sampler.summary()
    gathered = distributed.gather({**distributed.rank_stats(device), "telemetry": summary})
    if ctx.main:
        eff.ranks = [RankStats(**{k: v for k, v in entry.items() if k != "telemetry"}) for entry in gathered]
        eff.node_telemetry = {str(entry["node"]): entry["telemetry"] for entry in gathered if entry["telemetry"]}


def _job_energy(result: Result) -> float | None:
    """NVML energy of every node of the cell (rank 0's train and eval, the others' training)."""
    from harness.telemetry.summary import metrics_from_summary

    metrics = [result.telemetry.get("metrics") or {}]
    metrics += [metrics_from_summary(summary) for summary in result.efficiency.node_telemetry.values()]
    joules = [v for m in metrics for k, v in m.items() if k.startswith("gpu/") and k.endswith("/energy_j")]
    return float(sum(joules)) if joules else None


def _batch_record(config: CellConfig) -> dict[str, Any]:
    """How the global batch was split: the processes, each one's batch, the batch per optimizer step."""
    ctx, train = distributed.current(), config.train
    per_device = train.batch_size // ctx.world_size
    return {"distributed": ctx.mode, "world_size": ctx.world_size, "per_device_batch": per_device,
            "effective_batch": per_device * ctx.world_size * train.grad_accum}


def _save_weights(model: Any, tokenizer: Any, method: MethodSpec, cell_dir: Path) -> Path:
    """The adapter (PEFT methods) or the whole model (full fine-tuning)."""
    name = "model" if method.peft_type is None else "adapter"
    target = cell_dir / name
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    if method.peft_type is None:
        tokenizer.save_pretrained(target)
    return target


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _start_sampler(config: CellConfig, cell_dir: Path) -> Any:
    if not config.telemetry.enabled:
        return None
    try:
        from harness.telemetry import TelemetrySampler

        sampler = TelemetrySampler(cell_dir, interval_s=config.telemetry.interval_s, backend=config.telemetry.backend,
                                   initial_phase="load")
        sampler.start()
        return sampler
    except Exception as error:  # noqa: BLE001 - telemetry never fails a cell
        log.warning("telemetry off: %s", error)
        return None


def _set_phase(sampler: Any, phase: str) -> None:
    if sampler is not None:
        sampler.set_phase(phase)


def _stop_sampler(sampler: Any, result: Result, cell_dir: Path) -> None:
    if sampler is None:
        return
    try:
        sampler.stop()
        result.telemetry = {**sampler.summary(), "metrics": sampler.metrics()}
        for name, path in sampler.artifacts.items():
            if Path(path).is_file():
                result.artifacts[name] = str(Path(path).resolve().relative_to(cell_dir.resolve()))
    except Exception as error:  # noqa: BLE001
        result.telemetry = {"error": f"{type(error).__name__}: {error}"}


def _track(config: CellConfig, cell_dir: Path, result: Result) -> None:
    """Log to MLflow after result.json is on disk; record the outcome, never raise."""
    from harness.tracking import default_tracking_uri, log_result

    if not config.tracking.enabled:
        result.tracking.status = "disabled"
        _write_quietly(cell_dir, result)
        return
    uri = config.tracking.uri or default_tracking_uri(cell_dir)
    result.tracking.uri = uri
    try:
        result.tracking.run_id = log_result(cell_dir, result, uri=uri, experiment=config.tracking.experiment)
        result.tracking.status, result.tracking.error = "logged", None
    except Exception as error:  # noqa: BLE001 - tracking fails open
        result.tracking.status = "failed"
        result.tracking.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        log.warning("MLflow logging failed (%s); result.json is intact", result.tracking.error)
    _write_quietly(cell_dir, result)


def _write_quietly(cell_dir: Path, result: Result) -> None:
    """Rewrite result.json with the tracking outcome; the final one is on disk already."""
    try:
        write_result(cell_dir, result)
    except OSError as error:
        log.warning("could not record the tracking outcome in result.json: %s", error)


def load_trained(cell_dir: Path) -> tuple[Any, Formatter, list[Any], CellPlan]:
    """Reload a finished cell: base model plus its saved adapter (or fine-tuned weights).

    Returns (model, formatter, eval examples, plan), ready for :func:`harness.tasks.evaluate.evaluate`.
    """
    import torch

    from harness.cell.resolve import parse_cell_config

    config = parse_cell_config(yaml.safe_load((cell_dir / "config.yaml").read_text()), where=str(cell_dir / "config.yaml"))
    plan = prepare_cell(config)
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    _, dtype = _resolve_precision(config, device)
    spec = plan.model
    if (cell_dir / "model").is_dir():  # full fine-tuning saved every weight
        from dataclasses import replace

        spec = replace(spec, origin="local", local_dir=cell_dir / "model")
    loaded = load_model(spec, plan.head, num_labels=len(plan.task.label_names) or None,  # type: ignore[arg-type]
                        label_names=list(plan.task.label_names) or None, quantize_4bit=plan.method.quantize_4bit,
                        dtype=dtype, device=device, extra_kwargs=config.model_args)
    model = loaded.model
    if (cell_dir / "adapter").is_dir():
        from peft import PeftModel

        # AdaLoRA's reloaded adapter needs is_trainable=True for a forward pass with labels.
        model = PeftModel.from_pretrained(model, cell_dir / "adapter", is_trainable=plan.method.hooks.reload_trainable)
    formatter = Formatter(plan.task, plan.head, loaded.tokenizer, config.data)  # type: ignore[arg-type]
    return model, formatter, [formatter.encode(row) for row in plan.eval_rows], plan
