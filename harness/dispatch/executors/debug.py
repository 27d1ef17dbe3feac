"""submitit's debug executor: every cell in this process, one after another, during ``harness matrix``.

A debug job never outlives the submission, so a sweep's stage 2 follows in the same process
and a job without a final result.json has failed.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import submitit
from submitit.core.utils import environment_variables

from harness.dispatch.cell_state import CellState
from harness.dispatch.executor import Continuation, Executor, JobsRead, ResourceGroup, submitit_folder
from harness.dispatch.job import write_final
from harness.dispatch.ledger import JobRecord
from harness.dispatch.sacct import Runner
from harness.matrix import Matrix

log = logging.getLogger(__name__)


class Debug(Executor):
    name = "debug"
    in_process = True

    def make(self, matrix: Matrix, group: ResourceGroup, *, n_local: int) -> Any:
        return submitit.DebugExecutor(folder=submitit_folder(matrix))

    def job_script(self, matrix: Matrix, group: ResourceGroup) -> str:
        return f"#!/bin/bash\n# {self.name} executor: in this process, one cell after another\n"

    def describe_jobs(self, records: list[JobRecord]) -> str:
        return "run in this process"

    def run_submitted(self, group: ResourceGroup, jobs: list[Any]) -> None:
        """Run each cell here, one after another, without submitit's pdb on errors."""
        for cell, job in zip(group.cells, jobs):
            try:
                delayed = job.submission()
                # jobs of one array share the callable; elsewhere each unpickles its own copy
                delayed.function = copy.copy(delayed.function)
                with environment_variables(SUBMITIT_DEBUG_JOB_ID=job.job_id):
                    delayed.result()
            except Exception as error:  # noqa: BLE001 - CellJob records failures itself; this is the last guard
                log.exception("debug cell %s", cell.cell_id)
                write_final(cell.config, "failed", f"{type(error).__name__}: {error}", None)

    def read_states(self, states: list[CellState], runner: Runner | None) -> JobsRead:
        for state in states:
            state.status = "failed"
            state.error = state.error or f"the in-process ({self.name}) job ended without a final result.json"
        return JobsRead()

    def cancel(self, jobs: list[JobRecord], runner: Runner | None = None) -> list[list[str]]:
        return []  # nothing to stop: its jobs ended with the submission

    def schedule(self, matrix: Matrix, continuation: Continuation, array_ids: list[str]) -> tuple[dict[str, Any], str]:
        return {}, "stage 2 is submitted in this process when stage 1 ends"


DEBUG = Debug()
