"""The job every cell runs as: a checkpointable submitit callable.

``CellJob.__call__`` runs the cell runner (``DEFAULT_RUNNER``: a cell recorded to MLflow; it
writes result.json and resumes from the cell folder's checkpoint by itself). On SLURM's warning
signal before the time limit, or on preemption, submitit calls ``checkpoint``: it saves the live
trainer (through the callback the cell registers, ``harness.preemption``), counts the event, and
requeues, or, once the bound is reached, writes the job's final outcome (``timeout``, in
``outcome.json``, which ``harness.result.load_result`` reads over a result still "running") so the
cell's state is never left to guesswork. The job never writes result.json: the cell owns it.

This module must stay light to import: local jobs waiting for a slot import it
before they know they will run, so torch & co are imported only inside ``run``.
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit

from harness import folder_lock, preemption
from harness.cell.resolve import parse_cell_config
from harness.config import CellConfig
from harness.dispatch.ledger import read_run, update_run
from harness.result import FINAL_STATUSES, CorruptState, JobOutcome, ResultFile, Status, now_iso
from harness.train import distributed

log = logging.getLogger(__name__)

ENV_RUNNER = "HARNESS_CELL_RUNNER"  # "module:function"; tests point it at a stand-in
# The cell recorded to MLflow, composed in harness.tracking: neither dispatch nor the cell may
# import tracking (it sits above both), and the job is pickled and run in another process, so
# the runner is named here and imported there, when the job runs.
DEFAULT_RUNNER = "harness.tracking.record:run_cell"

_slot_handle: int | None = None  # the open lock file of a local slot (never pickled)
RANKS_GO = ".ranks-go"  # local executor: rank 0 of a distributed cell holds its slot (the job id inside)


class CellStopped(BaseException):
    """Raised from the signal handler when a cell will not be requeued again.

    A BaseException (like SystemExit) so that the runner's ``except Exception`` does not
    turn it into ``failed``; ``CellJob.__call__`` catches it and writes the final status.
    """

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CellJob(submitit.helpers.Checkpointable):
    def __init__(
        self,
        *,
        time_limit_min: float,
        signal_delay_s: int = 120,
        max_requeues: int = 3,
        max_preemptions: int = 10,
        local_slots: str | None = None,
        parallelism: int = 1,
        cpus: int | None = None,
        stop_at_step: int | None = None,
    ) -> None:
        self.time_limit_min = time_limit_min
        # a rung (successive halving): the runner stops the cell there, ``paused``; no setting of
        # the cell, so the job carries it (pickled with a requeue) and passes it to the runner
        self.stop_at_step = stop_at_step
        self.signal_delay_s = signal_delay_s
        self.max_requeues = max_requeues
        self.max_preemptions = max_preemptions
        # local executor only: a folder of lock files, one per cell allowed to run at once
        self.local_slots = local_slots
        self.parallelism = parallelism
        self.cpus = cpus
        # carried across requeues: checkpoint() pickles this object with them
        self.attempts = 0
        self.timeouts = 0
        self.preemptions = 0
        self.started: float | None = None
        self._local_deadline = False  # set by the local time-limit timer just before it signals
        self._stop: CellStopped | None = None  # the final stop, once decided
        self._cancelling = False  # a stop signal is being handled (saving the checkpoint)
        self._nag: threading.Event | None = None  # set to end the re-signalling thread

    # ------------------------------------------------------------------ running

    def __call__(self, config_json: dict[str, Any]) -> dict[str, Any]:
        config = parse_cell_config(config_json, where="cell job")
        if not self.local_slots:  # on SLURM, SIGTERM precedes a requeue: submitit bypasses it
            return self._call(config)
        # local: SIGINT/SIGTERM come from the user (Ctrl-C, or `harness matrix --wait` stopping)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, _frame: self._cancel(config, signum))
        try:
            return self._call(config)
        except CellStopped as stop:  # stopped before the cell started (waiting for a slot)
            write_final(config, stop.status, stop.message, None)
            return {"cell_id": config.cell_id, "status": stop.status, "output_dir": str(config.output_dir)}

    def _call(self, config: CellConfig) -> dict[str, Any]:
        cell_dir = Path(config.output_dir)
        if self.cpus:
            # Nothing pins local cells to cores: without this each of P cells starts one
            # BLAS/OpenMP thread per core of the machine and they spin against each other.
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ.setdefault(name, str(self.cpus))
        if distributed.distributed(config) and distributed.export_environment().rank != 0:
            return self._follow(config)
        slot = _acquire_slot(self.local_slots, self.parallelism) if self.local_slots else None
        try:
            acquired = folder_lock.acquire(cell_dir)  # held while this cell runs; nothing is written before
        except folder_lock.CellBusy as busy:
            # another live process (an orphaned worker of an earlier job) still writes this cell:
            # leave its files alone; status keeps reporting it as running
            log.error("%s", busy)
            return {"cell_id": config.cell_id, "status": "busy", "output_dir": str(cell_dir), "error": str(busy)}
        if slot is not None and distributed.distributed(config):
            # the local executor's other ranks wait for this one's slot before they meet it
            (cell_dir / RANKS_GO).write_text(str(_job_id()))
        timer = None
        try:
            # counted on from run.json, which a --retry-failed carries over (see submit)
            try:
                previous = read_run(cell_dir)
            except CorruptState as error:  # a requeued job runs on: update_run, below, starts it again
                log.warning("%s; attempts counted afresh", error)
                previous = None
            self.attempts = max(self.attempts, previous.attempts if previous else 0) + 1
            self.started = time.time()
            self._local_deadline = False
            timer = self._arm_local_time_limit() if self.local_slots else None
            update_run(
                cell_dir,
                attempts=self.attempts,
                timeouts=self.timeouts,
                preemptions=self.preemptions,
                job_id=_job_id(),
                hostname=socket.gethostname(),
                pid=os.getpid(),
                slot=slot,
                started_at=now_iso(),
                finished_at=None,
            )
            status = self._run(config)
        except CellStopped as stop:
            # the last time-out/preemption: the runner has unwound (leaving "running"),
            # now the job's final word goes into outcome.json
            write_final(config, stop.status, stop.message, None)
            status = stop.status
        finally:
            if timer is not None:
                timer.cancel()
            if self._nag is not None:
                self._nag.set()
        try:
            update_run(cell_dir, finished_at=now_iso(), status=status)
        finally:
            (cell_dir / RANKS_GO).unlink(missing_ok=True)
            if acquired:
                folder_lock.release(cell_dir)
        return {"cell_id": config.cell_id, "status": status, "output_dir": str(cell_dir)}

    def _follow(self, config: CellConfig) -> dict[str, Any]:
        """A task other than rank 0 of a distributed cell: train its share and write nothing (no
        slot, lock, run.json or result); a failure is left in ``rank-<r>.error`` for rank 0.
        With the local executor, rank 0 may first wait for a slot: the others wait with it, so
        that the rendezvous timeout counts from when the cell may run."""
        if self.local_slots:
            go, job = Path(config.output_dir) / RANKS_GO, str(_job_id())
            while not (go.is_file() and go.read_text() == job):
                time.sleep(0.5)
        try:
            status = str(getattr(self._runner(config), "status", "failed"))
        except Exception:  # noqa: BLE001 - the traceback is rank 0's to report
            distributed.record_error(Path(config.output_dir), traceback.format_exc(), int(os.environ["RANK"]))
            status = "failed"
        return {"cell_id": config.cell_id, "status": status, "output_dir": str(config.output_dir)}

    def _run(self, config: CellConfig) -> str:
        try:
            result = self._runner(config)
            status = getattr(result, "status", None)
        except Exception as error:  # noqa: BLE001 - run_cell handles training failures; this catches the rest (imports, ...)
            log.exception("cell %s failed outside the cell runner", config.cell_id)
            write_final(config, "failed", f"{type(error).__name__}: {error}", traceback.format_exc())
            return "failed"
        if status not in FINAL_STATUSES:  # the runner returned without a final result: record that
            write_final(config, "failed", f"cell runner returned status {status!r}", None)
            return "failed"
        return str(status)

    def _runner(self, config: CellConfig) -> Any:
        """The cell runner called on the config (and the rung, when the job has one: a runner
        that knows no rungs is still called as before)."""
        stop = getattr(self, "stop_at_step", None)  # a job pickled before rungs existed has none
        if stop is None:
            return load_runner()(config)
        return load_runner()(config, stop_at_step=stop)

    # ------------------------------------------------------------------ signals

    def checkpoint(self, config_json: dict[str, Any]) -> submitit.helpers.DelayedSubmission:
        if self._stop is not None:  # see _keep_signalling: the first raise was swallowed
            raise self._stop
        config = parse_cell_config(config_json, where="cell job")
        timed_out = self._timed_out()
        if timed_out:
            self.timeouts += 1
        else:
            self.preemptions += 1
        step = checkpoint_trainer()
        requeue = self.timeouts <= self.max_requeues and self.preemptions <= self.max_preemptions
        event = {"kind": "timeout" if timed_out else "preemption", "at": now_iso(), "step": step, "requeue": requeue}
        try:
            update_run(
                Path(config.output_dir),
                timeouts=self.timeouts,
                preemptions=self.preemptions,
                checkpoint_step=step,
                last_signal=event,
            )
        except OSError:
            log.exception("could not update run.json")
        if not requeue:
            if timed_out:
                reason = f"time limit ({self.time_limit_min} min) reached {self.timeouts} times (max_requeues={self.max_requeues})"
                stop = CellStopped("timeout", f"{reason}; last checkpoint at step {step}")
            else:
                reason = f"preempted {self.preemptions} times (max_preemptions={self.max_preemptions})"
                stop = CellStopped("cancelled", f"{reason}; last checkpoint at step {step}")
            # Written now in case the process dies before unwinding; __call__ writes it again
            # once the runner has unwound, if the runner's own cleanup left no final result.
            write_final(config, stop.status, stop.message, None)
            self._stop = stop
            self._keep_signalling()
            raise stop  # unwinds the runner from inside the signal handler
        self.started = None
        return submitit.helpers.DelayedSubmission(self, config_json)

    def _cancel(self, config: CellConfig, signum: int) -> None:
        """A local job told to stop: save the live trainer and end the cell ``cancelled``, so that
        ``--retry-failed`` resumes it from that checkpoint."""
        # already stopping: the controller forwards the signal too, and `matrix --wait` cancels
        # the job (SIGTERM) while the worker may still be saving on the terminal's SIGINT; the
        # first signal decides, or the result would name the second
        if self._stop is not None or getattr(self, "_cancelling", False):  # getattr: jobs pickled before it
            return
        self._cancelling = True
        step = checkpoint_trainer()
        kept = f"last checkpoint at step {step}" if step is not None else "no checkpoint taken"
        stop = CellStopped("cancelled", f"cancelled by {signal.Signals(signum).name}; {kept}")
        write_final(config, stop.status, stop.message, None)  # in case the process dies unwinding
        self._stop = stop
        self._keep_signalling()
        raise stop

    def _keep_signalling(self, every_s: float = 2.0) -> None:
        # An exception raised in a signal handler is dropped when the signal lands in a
        # weakref callback or __del__ (CPython prints "Exception ignored in ..." and the
        # runner carries on). Until __call__ has caught the stop, signal again.
        done = self._nag = threading.Event()

        def nag() -> None:
            while not done.wait(every_s):
                os.kill(os.getpid(), signal.SIGUSR2)

        threading.Thread(target=nag, daemon=True, name="cell-stop").start()

    def _timed_out(self) -> bool:
        """Whether the signal is the time-limit warning (rather than a preemption)."""
        if self._local_deadline:
            return True
        if self.started is None:
            return False
        limit = self.time_limit_min * 60
        elapsed = time.time() - self.started
        return elapsed >= max(limit - self.signal_delay_s - 60, 0.5 * limit)

    def _arm_local_time_limit(self) -> threading.Timer:
        # SLURM sends the warning signal itself (--signal=USR2@delay); locally we do it,
        # counted from when the cell got its slot, so waiting in line is not charged.
        delay = max(self.time_limit_min * 60 - self.signal_delay_s, 1.0)

        def warn() -> None:
            self._local_deadline = True
            os.kill(os.getpid(), signal.SIGUSR2)

        timer = threading.Timer(delay, warn)
        timer.daemon = True
        timer.start()
        return timer


def load_runner() -> Callable[..., Any]:
    target = os.environ.get(ENV_RUNNER, DEFAULT_RUNNER)
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name or "run_cell")


def checkpoint_trainer() -> int | None:
    """Have the running cell save its state (the callback it registered); the saved step, or None."""
    try:
        step = preemption.checkpoint_now()
    except Exception:  # noqa: BLE001 - a failed checkpoint must not block the requeue
        log.exception("the cell's checkpoint callback failed")
        return None
    return int(step) if step is not None else None


def write_final(config: CellConfig, status: Status, error: str | None, trace: str | None) -> None:
    """The job's final word on the cell (``outcome.json``), unless the runner has given its own;
    ``load_result`` reads it over what the runner recorded."""
    from harness.methods.registry import known_method

    method = known_method(config.method)  # its registry entry says whether training settings apply
    recorded = config.public_dump(trains=method is None or method.trains)
    outcome = JobOutcome(cell_id=config.cell_id, status=status, error=error, traceback=trace, config=recorded)
    ResultFile(Path(config.output_dir)).end_job(outcome)


def _job_id() -> str | None:
    try:
        return str(submitit.JobEnvironment().job_id)
    except Exception:  # noqa: BLE001 - not inside a submitit job (tests calling the job directly)
        return None


def _acquire_slot(folder: str, parallelism: int, poll_s: float = 0.5) -> int:
    """Block until one of ``parallelism`` lock files is ours; the kernel frees it when we exit."""
    global _slot_handle
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(parallelism):
            handle = os.open(path / f"slot-{index}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(handle)
                continue
            _slot_handle = handle
            return index
        time.sleep(poll_s)
