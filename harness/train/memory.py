"""Per-phase wall time and peak memory.

On GPU the torch allocator's peaks (allocated and reserved) are reset at each phase
start. On CPU the process's resident memory is polled by a small thread, because
the kernel's ``ru_maxrss`` only knows the peak of the whole process lifetime.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import torch

from harness.result import PhaseStats

RSS_POLL_S = 0.05


class PhaseMeter:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.phases: dict[str, PhaseStats] = {}
        self._step_samples: list[int] = []

    def step(self) -> None:
        """Sample the memory after an optimizer step of the current phase: the allocator's reserved
        bytes on a GPU (what peft's benchmark logs each step), the process RSS on a CPU."""
        if self.device.type == "cuda":
            self._step_samples.append(int(torch.cuda.memory_reserved(self.device)))
        else:
            self._step_samples.append(int(psutil.Process().memory_info().rss))

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseStats]:
        stats = PhaseStats()
        self.phases[name] = stats
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        poller = _RssPoller()
        poller.start()
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        self._step_samples = []
        try:
            yield stats
        finally:
            record_step_memory(stats, self._step_samples, "reserved" if cuda else "rss")
            if cuda:
                torch.cuda.synchronize(self.device)
                stats.peak_allocated_bytes = int(torch.cuda.max_memory_allocated(self.device))
                stats.peak_reserved_bytes = int(torch.cuda.max_memory_reserved(self.device))
            stats.wall_s = time.perf_counter() - start
            stats.cpu_s = _cpu_seconds() - cpu_start
            # the poller samples every RSS_POLL_S: a per-step sample may catch a higher point
            stats.peak_rss_bytes = max([poller.stop(), *([] if cuda else self._step_samples)])


def _cpu_seconds() -> float:
    """User and system CPU time of this process and its waited-for children, in core-seconds."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def record_step_memory(stats: PhaseStats, samples: list[int], measure: str) -> None:
    """Average, 99th percentile (linear interpolation, numpy's default, as peft computes it) and
    maximum of the per-step samples; nothing when the phase took no step."""
    if not samples:
        return
    import numpy as np

    stats.step_memory_measure = measure
    stats.step_memory_avg_bytes = float(np.mean(samples))
    stats.step_memory_p99_bytes = float(np.percentile(samples, 99))
    stats.step_memory_max_bytes = int(max(samples))


class _RssPoller(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True, name="rss-poller")
        self._process = psutil.Process()
        self._stop_event = threading.Event()
        self.peak = self._process.memory_info().rss

    def run(self) -> None:
        while not self._stop_event.wait(RSS_POLL_S):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, self._process.memory_info().rss)
