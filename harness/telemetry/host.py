"""Host backend: CPU and RSS of the job's process tree (used when no NVML device)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psutil

from .process_tree import ProcessTree, TreeCpuMeter, usable_cpu_count
from .schema import HOST_COLUMNS


class HostBackend:
    name = "host"
    columns: tuple[str, ...] = HOST_COLUMNS

    def __init__(self, root_pid: int, exclude_pids: Iterable[int] = (), tree_refresh_s: float = 1.0) -> None:
        self.tree = ProcessTree(root_pid, frozenset(exclude_pids), refresh_s=tree_refresh_s)
        self.cpu_count = usable_cpu_count()
        self._meter = TreeCpuMeter()
        psutil.cpu_percent(None)  # prime the node-wide counter; its first reading is meaningless

    def sample(self) -> list[dict[str, Any]]:
        usage = self._meter.sample(self.tree.pids())
        util = usage.cpu_util_pct
        return [
            {
                "n_procs": usage.n_procs,
                "cpu_util_pct": util,
                "cpu_util_norm_pct": None if util is None else util / self.cpu_count,
                "rss_bytes": usage.rss_bytes,
                "node_cpu_util_pct": psutil.cpu_percent(None),
                "node_mem_used_bytes": int(psutil.virtual_memory().used),
            }
        ]

    def meta(self) -> dict[str, Any]:
        return {
            "cpu_count": self.cpu_count,
            "root_pid": self.tree.root_pid,
            "unavailable_fields": [],
            "field_errors": {},
        }

    def close(self) -> None:
        pass
