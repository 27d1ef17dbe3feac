"""Run one benchmark cell (model x method x task x seed) from its resolved config.

The only place that ties models, methods, tasks, train and telemetry together. The cell runs by
phase, each a module of this package that :func:`run_cell` composes:
:mod:`~harness.cell.plan` (resolve and check), :mod:`~harness.cell.load`,
:mod:`~harness.cell.train`, :mod:`~harness.cell.save`, :mod:`~harness.cell.evaluate` and
:mod:`~harness.cell.record`; result.json is written through one
:class:`harness.result.ResultFile`.

Features:
- validates everything (names, combination, data files, field mapping) before loading a model
  or writing a file;
- phases ``load``, ``train``, ``eval``, each with wall time and peak memory, stamped on the
  telemetry samples;
- resumes from the cell folder's latest checkpoint when one exists;
- writes ``result.json`` (the source of truth) before the cell is recorded, then notes the
  recorder's outcome (MLflow, passed in by ``harness.tracking.record``); a tracking failure
  leaves the cell successful;
- sets aside space for the final ``result.json``: a full disk ends the cell ``failed``, saying so;
- stops at a rung when asked (``stop_at_step``: successive halving), checkpointed and evaluated
  there, status ``paused``; run again, the cell continues from that checkpoint;
- one process of a distributed cell (``train.distributed``) writes the folder: rank 0.

Raises:
    ConfigError: bad input (before anything is written), or an output folder that cannot be
        written. Any other failure ends in the result: ``diverged`` when training stopped at a
        non-finite or exploded loss (``harness.train.divergence``, with the step in the result's
        ``divergence``), ``oom`` for out-of-memory, ``failed`` with its traceback otherwise. A
        preemption (``SystemExit``/``KeyboardInterrupt``) leaves the
        result ``running`` and the checkpoint in place for the requeued job.

Cell folder: ``config.yaml``, ``result.json``, ``log.txt``, ``predictions.jsonl``, ``adapter/``
(or ``model/`` for full fine-tuning), ``checkpoints/`` while running, ``telemetry.csv`` and
``timeline.png``.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from pathlib import Path
from typing import Any

import yaml

from harness import folder_lock
from harness.cell.evaluate import evaluate, forgetting_after, forgetting_before, keep, keep_forgetting
from harness.cell.inputs import cell_inputs
from harness.cell.load import load, load_saved, quiet_libraries, resolve_precision, run_record
from harness.cell.measure import Phases, compute_cost, job_energy, start_sampler, stop_sampler
from harness.cell.plan import CellPlan, prepare_cell
from harness.cell.record import Recorder, record_cell
from harness.cell.reuse import add_trained_phases, adopt, find_reuse
from harness.cell.save import save
from harness.cell.train import CHECKPOINT_DIR, train
from harness.config import CellConfig
from harness.environment import environment
from harness.errors import ConfigError, error_line
from harness.models import count_module_parameters
from harness.names import CELL_CONFIG, CELL_LOG
from harness.result import PAUSED, CorruptState, Cost, Result, ResultFile, Rung, now_iso
from harness.train import distributed
from harness.train.divergence import TrainingDiverged

EARLIER_RUNS = "earlier_runs"  # efficiency.cost's phase: what the runs before a continuation cost

log = logging.getLogger("harness.cell")  # one logger for every phase: log.txt names the cell


def run_cell(config: CellConfig, record: Recorder | None = None, *, stop_at_step: int | None = None) -> Result:
    """Run the cell; return its result (also written to ``<output_dir>/result.json``).

    ``record`` records the finished cell (``harness.tracking.record.record_result``); without
    it a cell that tracks stays ``pending``. ``stop_at_step``: a rung below the cell's total
    steps. The cell trains on the full budget's schedule up to that step, saves its checkpoint,
    is evaluated there and ends ``paused`` (the rung in ``result.rungs``, no weights saved); run
    again, it continues from that checkpoint. It is no setting of the cell (the cell id stays).
    Raises ConfigError for bad input, before anything is written.
    """
    plan = prepare_cell(config)
    _check_stop(plan, stop_at_step)
    cell_dir = Path(config.output_dir)
    ctx = distributed.setup(config)  # train.distributed: this rank of the process group
    try:
        if not ctx.main:
            return _follow(plan, cell_dir, stop_at_step)
        return _lead(plan, cell_dir, record, stop_at_step)
    finally:
        distributed.teardown()


def _check_stop(plan: CellPlan, stop_at_step: int | None) -> None:
    """A rung lies between the first step and the cell's last."""
    if stop_at_step is None:
        return
    if not plan.method.trains:
        raise ConfigError(f"stop at step {stop_at_step}: method {plan.config.method} does not train")
    from harness.train import total_optimizer_steps  # torch: only when a rung is asked for

    total = total_optimizer_steps(len(plan.train_rows), plan.config.train)
    if not 1 <= stop_at_step < total:
        raise ConfigError(
            f"stop at step {stop_at_step}: a rung must lie in 1..{total - 1}, below the cell's {total} steps"
        )


def _follow(plan: CellPlan, cell_dir: Path, stop_at_step: int | None) -> Result:
    """A rank other than 0 of a distributed cell: train its share, write nothing but, on a
    failure, its traceback (``rank-<r>.error``), which rank 0 reports."""
    config, ctx = plan.config, distributed.current()
    quiet_libraries()
    result = Result(
        cell_id=config.cell_id, status="running", config=config.public_dump(trains=plan.method.trains), environment={}
    )
    device = distributed.device()
    # one sampler per node: rank 0 samples its own; the first rank of every other node samples that
    # one into node-<k>/ and hands its summary to rank 0 after training
    sampler = None
    if ctx.samples_node and ctx.node > 0:
        (cell_dir / f"node-{ctx.node}").mkdir(parents=True, exist_ok=True)
        sampler = start_sampler(config, cell_dir / f"node-{ctx.node}")
    try:
        _execute(plan, cell_dir, device, Phases(device, sampler), result, stop_at_step)
    except TrainingDiverged as diverged:  # rank 0 stops at the same step and records it: not an error
        result.status, result.divergence = "diverged", diverged.divergence
        return result
    except Exception:
        distributed.record_error(cell_dir, traceback.format_exc())
        raise
    finally:
        if sampler is not None:
            sampler.stop()
    result.status = "success"
    return result


def _lead(plan: CellPlan, cell_dir: Path, record: Recorder | None, stop_at_step: int | None) -> Result:
    """The process that writes the cell: the only one, or rank 0."""
    try:
        acquired = folder_lock.acquire(cell_dir)  # before any write: one live writer per folder
    except OSError as error:
        raise _unwritable(cell_dir, error) from None
    file = ResultFile(cell_dir)
    try:
        for stale in cell_dir.glob(distributed.ERROR_FILE.format(rank="*")):  # an earlier attempt's
            stale.unlink(missing_ok=True)
        try:
            file.reserve()
        except OSError as error:
            raise _unwritable(cell_dir, error) from None
        handler = _attach_log(cell_dir / CELL_LOG)
        try:
            return _run(plan, file, record, stop_at_step)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
    finally:
        file.release()
        if acquired:
            folder_lock.release(cell_dir)


def _unwritable(cell_dir: Path, error: OSError) -> ConfigError:
    return ConfigError(f"output folder {cell_dir}: cannot write there ({error.strerror or error})")


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


def _run(plan: CellPlan, file: ResultFile, record: Recorder | None, stop_at_step: int | None) -> Result:
    """The lead's run: result.json begun, the phases, the final result whatever happened, then
    the cell recorded (not at a rung: a paused cell is recorded once it has finished)."""
    config, cell_dir = plan.config, file.cell_dir
    quiet_libraries()
    rungs = _earlier_rungs(file)
    # result.json records no training settings for a method that does not train; config.yaml (the
    # cell's input, read back to resume or reload it) keeps them all
    recorded = config.public_dump(trains=plan.method.trains)
    result = Result(cell_id=config.cell_id, status="running", config=recorded, environment=environment(), rungs=rungs)
    try:
        (cell_dir / CELL_CONFIG).write_text(yaml.safe_dump(config.public_dump(), sort_keys=False))
        file.begin(result)
    except OSError as error:
        result.status, result.error, result.finished_at = "failed", f"{type(error).__name__}: {error}", now_iso()
        file.finish(result)
        return result
    log.info("cell %s: %s / %s / %s / seed %d", config.cell_id, config.model, config.method, config.task, config.seed)

    device = distributed.device()
    sampler = start_sampler(config, cell_dir)
    phases = Phases(device, sampler)
    try:
        paused = _execute(plan, cell_dir, device, phases, result, stop_at_step)
        result.status = PAUSED if paused else "success"
    except Exception as error:  # noqa: BLE001 - any failure of this cell must end as a result, not a crash
        _record_failure(result, error, cell_dir)
    finally:
        # Preemption (SystemExit) also passes here: stop the sampler, keep status "running".
        result.efficiency.phases = phases.meter.phases
        stop_sampler(sampler, result, cell_dir)
        result.efficiency.job_energy_j = job_energy(result)
        result.efficiency.cost = _with_earlier(
            compute_cost(result, device, distributed.current().world_size), rungs[-1] if rungs else None
        )
        add_trained_phases(result)  # a reused run's: shown, not counted in this cell's cost
        if result.status == PAUSED:
            _add_rung(result)
        result.finished_at = now_iso()
        file.finish(result)
    if result.status in ("success", "diverged"):  # a diverged cell's checkpoint only leads to the same divergence
        shutil.rmtree(cell_dir / CHECKPOINT_DIR, ignore_errors=True)
    if result.status != PAUSED:
        record_cell(config, file, result, record)
    return result


def _earlier_rungs(file: ResultFile) -> list[Rung]:
    """The rungs of the cell's earlier runs, which this one continues: a paused result's, that of
    a continuation preempted before it ended, or of one that failed and is retried. A finished
    result (or none) began afresh."""
    try:
        previous = file.read()
    except CorruptState:
        return []
    # a failed continuation's result, kept by its retry (submit), carries its rungs on as well
    return list(previous.rungs) if previous is not None and previous.status not in ("success", "diverged") else []


def _with_earlier(cost: Cost, last: Rung | None) -> Cost:
    """A continued cell's cost counts the runs before it (phase ``earlier_runs``): what the rungs cost."""
    if last is None:
        return cost
    phases = {**cost.phases, EARLIER_RUNS: last.device_s}
    return cost.model_copy(
        update={"phases": phases, "device_s": sum(phases.values()), "wall_s": cost.wall_s + last.wall_s}
    )


def _add_rung(result: Result) -> None:
    """The rung this run stopped at: its metrics, and what the cell has cost up to it. A rung run
    again (the same stop) replaces its record."""
    step, cost = result.efficiency.train_steps, result.efficiency.cost
    rung = Rung(
        step=step,
        metrics=dict(result.metrics),
        wall_s=cost.wall_s if cost else 0.0,
        device_s=cost.device_s if cost else 0.0,
    )
    result.rungs = [r for r in result.rungs if r.step < step] + [rung]


def _record_failure(result: Result, error: Exception, cell_dir: Path) -> None:
    """``diverged`` for a diverged training run, ``oom`` for out-of-memory, else ``failed``;
    another rank's failure, when one failed first, is the cause."""
    import torch

    if isinstance(error, TrainingDiverged):  # an outcome of the settings, not a fault: no traceback
        result.status, result.error, result.divergence = "diverged", error_line(error), error.divergence
        log.error("%s", result.error)
        return
    result.traceback = traceback.format_exc()
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        result.status, result.error = "oom", error_line(error)
        log.error("out of memory: %s", result.error)
        return
    result.status, result.error = "failed", f"{type(error).__name__}: {error}"
    for rank, text in distributed.rank_errors(cell_dir):  # another rank failed first: its error is the cause
        last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
        result.error = f"rank {rank} failed: {last}"
        result.traceback = f"rank {rank}:\n{text}\nrank 0 then:\n{result.traceback}"
        break
    log.error("cell failed: %s\n%s", result.error, result.traceback)


def _execute(
    plan: CellPlan, cell_dir: Path, device: Any, phases: Phases, result: Result, stop_at_step: int | None = None
) -> bool:
    """The phases of one process: load, train (methods that train), save, eval (rank 0 only).
    True when training stopped at a rung (``stop_at_step``): no weights saved, the model as it is
    there evaluated. The checkpoint is on disk before that evaluation, and a continuation is a
    new run that loads the model again and resumes from it: the evaluation cannot change it."""
    import transformers

    precision, dtype = resolve_precision(plan.config, device)
    transformers.set_seed(plan.config.seed)
    reuse, result.retrained = find_reuse(plan, stop_at_step)
    if result.retrained:
        log.info("training again instead of reusing the stage-1 run: %s", result.retrained)
    if reuse is not None:  # a sweep's stage-2 first seed: the winner's weights, evaluated
        with phases("load"):
            loaded = load_saved(plan, reuse.weights.parent, device, dtype)
        adopt(reuse, cell_dir, result, len(loaded.eval_examples))
        result.inputs = cell_inputs(plan, loaded.model)
        with phases("eval"):
            evaluation = evaluate(plan, loaded, loaded.model, device)
        keep(evaluation, cell_dir, result)
        return False
    with phases("load"):
        loaded = load(plan, device, dtype)
        trainable, total = count_module_parameters(loaded.model)
        # data.forgetting: the base model's loss before training changes it, on rank 0 (which evaluates)
        forgetting = forgetting_before(plan, loaded, device) if distributed.current().main else None
    result.run = run_record(plan, loaded)
    result.inputs = cell_inputs(plan, loaded.model)
    eff = result.efficiency
    eff.trainable_params, eff.total_params = trainable, total
    eff.trainable_share = trainable / total if total else 0.0
    log.info("parameters: %d trainable of %d (%.4f%%)", trainable, total, 100 * eff.trainable_share)
    model, paused = loaded.model, False
    if plan.method.trains:
        model = train(
            plan, loaded, cell_dir, device, precision, phases, eff, lambda: load(plan, device, dtype), stop_at_step
        )
        paused = eff.train_steps < loaded.total_steps
        if model is None:
            return paused  # another rank: rank 0 saves the weights, evaluates and writes the result
        if not paused:  # at a rung the checkpoint is the state: weights are saved once, at the end
            save(model, loaded.tokenizer, plan.method, cell_dir, result)
    with phases("eval"):
        evaluation = evaluate(plan, loaded, model, device)
        record = forgetting_after(forgetting, plan, loaded, model, device)
    keep(evaluation, cell_dir, result)
    keep_forgetting(record, result)
    return paused
