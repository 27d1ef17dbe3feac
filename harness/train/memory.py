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
        start = time.perf_counter()
        try:
            yield stats
        finally:
            if cuda:
                torch.cuda.synchronize(self.device)
                stats.peak_allocated_bytes = int(torch.cuda.max_memory_allocated(self.device))
                stats.peak_reserved_bytes = int(torch.cuda.max_memory_reserved(self.device))
            stats.wall_s = time.perf_counter() - start
            stats.peak_rss_bytes = poller.stop()


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
