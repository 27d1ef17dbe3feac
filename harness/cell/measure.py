"""Measuring a cell: each phase's wall time and peak memory (``PhaseMeter``), stamped on the
telemetry sampler's rows, and the sampler's summary and the job's energy in the result.
Telemetry never fails a cell."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.config import CellConfig
from harness.result import Cost, Result

log = logging.getLogger("harness.cell")


class Phases:
    """The phases of one process of a cell (load, train, eval)."""

    def __init__(self, device: Any, sampler: Any) -> None:
        from harness.train import PhaseMeter

        self.meter = PhaseMeter(device)
        self.sampler = sampler

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.sampler is not None:
            self.sampler.set_phase(name)
        with self.meter.phase(name):
            yield


def start_sampler(config: CellConfig, folder: Path) -> Any:
    """The telemetry sampler of this node, writing into ``folder``; None when off or unavailable."""
    if not config.telemetry.enabled:
        return None
    try:
        from harness.telemetry import TelemetrySampler

        sampler = TelemetrySampler(
            folder, interval_s=config.telemetry.interval_s, backend=config.telemetry.backend, initial_phase="load"
        )
        sampler.start()
        return sampler
    except Exception as error:  # noqa: BLE001 - telemetry never fails a cell
        log.warning("telemetry off: %s", error)
        return None


def stop_sampler(sampler: Any, result: Result, cell_dir: Path) -> None:
    """Stop the sampler; its summary, metrics and files into the result."""
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


def compute_cost(result: Result, device: Any, world_size: int) -> Cost:
    """The cell's compute per phase and in all (harness.result.Cost). On a GPU every process holds
    one device for the phase's wall time; on a CPU the processes' CPU time is what they used (the
    train phase summed over ranks when they reported theirs; load runs on every rank, counted as
    rank 0's times the ranks; eval runs on rank 0 alone)."""
    phases = result.efficiency.phases
    gpu = getattr(device, "type", "cpu") == "cuda"
    ranks_cpu = [r.train_cpu_s for r in result.efficiency.ranks if r.train_cpu_s is not None]
    cost: dict[str, float] = {}
    for name, stats in phases.items():
        processes = world_size if name != "eval" else 1
        if gpu:
            cost[name] = stats.wall_s * processes
        elif name == "train" and ranks_cpu and len(ranks_cpu) == world_size:
            cost[name] = float(sum(ranks_cpu))
        else:
            cost[name] = (stats.cpu_s or 0.0) * processes
    return Cost(
        measure="gpu_seconds" if gpu else "core_seconds",
        device_s=sum(cost.values()),
        phases=cost,
        wall_s=sum(stats.wall_s for stats in phases.values()),
        energy_j=result.efficiency.job_energy_j,
    )


def job_energy(result: Result) -> float | None:
    """NVML energy of every node of the cell (rank 0's train and eval, the others' training)."""
    from harness.telemetry.summary import metrics_from_summary

    metrics = [result.telemetry.get("metrics") or {}]
    metrics += [metrics_from_summary(summary) for summary in result.efficiency.node_telemetry.values()]
    joules = [v for m in metrics for k, v in m.items() if k.startswith("gpu/") and k.endswith("/energy_j")]
    return float(sum(joules)) if joules else None
