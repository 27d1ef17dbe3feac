"""What a comparison measures, as registry entries: each measure carries its direction of
"worse", its unit, its default bound and whether it is a timing; the rest of the package asks
the entry and never tests a measure's name.

Quality metrics come from the task scorings (``harness.tasks.kinds.SCORINGS``: every quality
column of a row's scoring) and are tested over seeds with a tolerance in points. Efficiency
measures are read from the report's rows (:class:`harness.report.load.CellRow`) and checked
against a relative bound, ReFrame-style ``(lo, hi)``: the change ``new / reference - 1`` must
lie within it. Each measure belongs to an *aspect*; ``--gate`` chooses the aspects that decide
the exit status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.report.load import QUALITY

Better = Literal["lower", "higher"]
GIB = 1024**3

# aspect -> what it covers, in the order tables show them
ASPECTS: dict[str, str] = {
    "quality": "quality metrics over seeds (t interval of the difference against a tolerance in points)",
    "memory": "peak memory per phase (GPU allocator, NVML, or host RSS on a CPU)",
    "throughput": "training samples and tokens per second, MFU",
    "time": "wall time per phase",
    "compile": "time of torch.compile's first step",
    "energy": "NVML energy per phase (GPU only)",
    "ratio": "the harness against a bare loop measured in the same run (bench/gate.py)",
}
QUALITY_ASPECT = "quality"
# what decides the exit status unless --gate says otherwise; timings (throughput, time) only on a
# GPU unless --gate-cpu: on a CPU, a shared machine's load moves them more than any code change
DEFAULT_GATE: tuple[str, ...] = ("quality", "memory", "throughput", "time", "ratio")
DEFAULT_TOLERANCE_POINTS = 1.0  # quality: a drop must exceed this many points (x100) to count
DEFAULT_BOUND: tuple[float, float] = (-0.10, 0.10)  # efficiency: ±10 %, as fms-acceleration flags


@dataclass(frozen=True)
class Measure:
    """One efficiency figure of a row (a CellRow attribute, or a figure a run attaches itself)."""

    name: str
    label: str
    aspect: str
    better: Better
    unit: str
    scale: float = 1.0  # shown as value / scale in ``unit``
    digits: int = 2
    # a time or a rate: on a CPU (a shared machine) it is reported and gated only when asked
    timing: bool = False
    # the CellRow attribute naming how a memory figure was measured (gpu | rss): sides that
    # measured it differently are not comparable
    measured_by: str | None = None
    bound: tuple[float, float] = DEFAULT_BOUND
    read_from_row: bool = True  # False: only a run that attaches it has it (the bare-loop ratio)

    def worse(self, change: float, bound: tuple[float, float]) -> bool:
        """Whether a relative change lies beyond the bound on the side this measure calls worse."""
        lo, hi = bound
        return change > hi if self.better == "lower" else change < lo

    def better_than(self, change: float, bound: tuple[float, float]) -> bool:
        lo, hi = bound
        return change < lo if self.better == "lower" else change > hi


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            "train_peak_bytes", "Train peak memory", "memory", "lower", "GiB", GIB, 3, measured_by="train_peak_measure"
        ),
        Measure(
            "eval_peak_bytes", "Eval peak memory", "memory", "lower", "GiB", GIB, 3, measured_by="eval_peak_measure"
        ),
        Measure("gpu_mem_used_peak_bytes", "GPU memory used (NVML)", "memory", "lower", "GiB", GIB, 3),
        Measure("train_samples_per_s", "Train samples/s", "throughput", "higher", "samples/s", timing=True),
        Measure("train_tokens_per_s", "Train tokens/s", "throughput", "higher", "tokens/s", digits=0, timing=True),
        Measure("mfu", "MFU", "throughput", "higher", "%", 0.01, 1, timing=True),
        Measure("train_wall_s", "Train wall time", "time", "lower", "s", timing=True),
        Measure("eval_wall_s", "Eval wall time", "time", "lower", "s", timing=True),
        Measure("compile_s", "Compile time", "compile", "lower", "s", timing=True),
        Measure("train_energy_j", "Train energy", "energy", "lower", "kJ", 1e3, 2),
        Measure("eval_energy_j", "Eval energy", "energy", "lower", "kJ", 1e3, 2),
        # a bare loop's CPU time for a cell's work over the harness's, both measured in one run on one
        # machine: the CPU efficiency figure the CI gate checks (an absolute CPU time says more about
        # the machine than about the code); 1 is parity, lower is a slower harness
        Measure(
            "speed_vs_bare_loop",
            "Speed vs bare loop (CPU time)",
            "ratio",
            "higher",
            "×",
            digits=3,
            read_from_row=False,
        ),
    )
}


def quality_metrics(scoring: str) -> tuple[str, ...]:
    """The quality metrics a row of this scoring is tested on (its report columns)."""
    return QUALITY.get(scoring, ())


def all_quality_metrics() -> list[str]:
    return list(dict.fromkeys(m for columns in QUALITY.values() for m in columns))
