"""The one-line progress summary of ``harness matrix --wait`` and ``harness status --watch``.

:func:`progress_line` is pure (counts and times in, text out); :class:`ProgressPrinter` writes
it: rewritten in place on a terminal (carriage return, like tqdm), on a line of its own only
when the counts change otherwise, so that a log of a long run stays short.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TextIO

from harness.dispatch.cell_state import ACTIVE, CellStatus
from harness.dispatch.status import StatusReport
from harness.result import FINAL_STATUSES, PAUSED

DONE: frozenset[str] = frozenset({"success"})
NOT_COUNTED: frozenset[str] = frozenset({"excluded"})


def summarize(counts: Mapping[CellStatus, int]) -> tuple[int, int, int, int, int]:
    """(done, running, pending, paused, failed): ``success`` is done; a halving's grid point that
    stopped at its rung is paused (it may continue); any other end (failed, oom, timeout,
    cancelled, diverged, unknown, corrupt) counts as failed; queued cells are pending."""
    done = running = pending = paused = failed = 0
    for status, n in counts.items():
        if status in DONE:
            done += n
        elif status == "running":
            running += n
        elif status in ACTIVE or status == "pending":
            pending += n
        elif status == PAUSED:
            paused += n
        elif status not in NOT_COUNTED:
            failed += n
    return done, running, pending, paused, failed


def duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(counts: Mapping[CellStatus, int], elapsed_s: float, durations: list[float], slots: int) -> str:
    """``cells 3/10 done, 2 running, 4 pending, 1 failed | 5m12s elapsed, ~8m30s left``.

    The time left: the mean duration of the cells that have ended, times the cells still to end,
    over the cells that run at once (``slots``); "estimating" until a cell has ended."""
    done, running, pending, paused, failed = summarize(counts)
    total = done + running + pending + paused + failed
    at_rungs = f", {paused} paused at a rung" if paused else ""
    line = f"cells {done}/{total} done, {running} running, {pending} pending{at_rungs}, {failed} failed"
    remaining = running + pending
    if not remaining:
        left = "finished"
    elif durations:
        mean = sum(durations) / len(durations)
        left = f"~{duration(mean * remaining / max(slots, 1))} left"
    else:
        left = "estimating time left"
    return f"{line} | {duration(elapsed_s)} elapsed, {left}"


def cell_durations(report: StatusReport) -> list[float]:
    """Seconds each ended cell ran, from its result's start and end times."""
    out: list[float] = []
    for state in report.states:
        result = state.result
        if state.status not in FINAL_STATUSES or result is None or not result.finished_at:
            continue
        try:
            seconds = (
                datetime.fromisoformat(result.finished_at) - datetime.fromisoformat(result.started_at)
            ).total_seconds()
        except ValueError:
            continue
        out.append(seconds)
    return out


class ProgressPrinter:
    """Writes each new line: in place on a terminal, else only when the counts have changed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self._last_counts: tuple[int, int, int, int, int] | None = None
        self._width = 0

    def show(self, report: StatusReport, elapsed_s: float) -> None:
        counts = report.counts()
        line = progress_line(counts, elapsed_s, cell_durations(report), report.matrix.spec.executor.array_parallelism)
        if self.live:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        elif summarize(counts) != self._last_counts:
            self.stream.write(line + "\n")
        self._last_counts = summarize(counts)
        self.stream.flush()

    def close(self) -> None:
        """End the line rewritten in place, so that what follows starts on its own."""
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
