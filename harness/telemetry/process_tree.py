"""The job's process tree (root = training process, plus descendants) and its CPU/RSS.

DataLoader workers and tokenizer pools come and go, so the tree is re-read
periodically; reading it costs a scan of /proc (psutil builds a ppid map), which
is why :class:`ProcessTree` caches it for ``refresh_s``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil


def process_tree_pids(root_pid: int, exclude: Iterable[int] = ()) -> set[int]:
    """``root_pid`` and all its live descendants, minus ``exclude``; empty if root is gone."""
    excluded = set(exclude)
    try:
        root = psutil.Process(root_pid)
        children = root.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return set()
    pids = {root_pid} | {c.pid for c in children}
    return pids - excluded


def usable_cpu_count() -> int:
    """Cores this job may run on (SLURM/cgroup cpusets), not the whole node."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, psutil.cpu_count() or 1)


@dataclass
class ProcessTree:
    """Cached view of the tree; ``pids()`` re-scans at most every ``refresh_s``."""

    root_pid: int
    exclude: frozenset[int] = frozenset()
    refresh_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _pids: set[int] = field(default_factory=set, init=False)
    _at: float = field(default=float("-inf"), init=False)

    def pids(self) -> set[int]:
        now = self.clock()
        if now - self._at >= self.refresh_s:
            self._pids = process_tree_pids(self.root_pid, self.exclude)
            self._at = now
        return set(self._pids)


@dataclass(frozen=True)
class TreeUsage:
    n_procs: int
    cpu_util_pct: float | None  # percent of one core, summed; None on the first reading
    rss_bytes: int


class TreeCpuMeter:
    """CPU utilisation of a changing set of processes from cpu_times deltas.

    psutil's ``cpu_percent()`` needs a persistent Process per pid and returns a
    meaningless 0.0 on first sight; tracking (pid, create_time) -> cpu seconds
    ourselves lets a process born between two samples count from its birth and
    protects against pid reuse.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._procs: dict[int, psutil.Process] = {}
        self._last_cpu: dict[tuple[int, float], float] = {}
        self._last_t: float | None = None
        self._last_wall: float | None = None

    def sample(self, pids: Iterable[int]) -> TreeUsage:
        now = self._clock()
        wall = time.time()
        cpu_delta = 0.0
        rss = 0
        seen: dict[tuple[int, float], float] = {}
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = psutil.Process(pid)
                    self._procs[pid] = proc
                with proc.oneshot():
                    key = (pid, proc.create_time())
                    times = proc.cpu_times()
                    mem = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(pid, None)
                continue
            total = times.user + times.system
            rss += mem
            seen[key] = total
            prev = self._last_cpu.get(key)
            if prev is not None:
                cpu_delta += max(0.0, total - prev)
            elif self._last_wall is not None and key[1] >= self._last_wall:
                cpu_delta += total  # born since the previous sample: all of its CPU is new
        util: float | None = None
        if self._last_t is not None and now > self._last_t:
            util = 100.0 * cpu_delta / (now - self._last_t)
        self._last_cpu = seen
        self._last_t = now
        self._last_wall = wall
        # forget Process objects of pids that left the tree
        live = {k[0] for k in seen}
        for pid in list(self._procs):
            if pid not in live:
                del self._procs[pid]
        return TreeUsage(n_procs=len(seen), cpu_util_pct=util, rss_bytes=rss)
