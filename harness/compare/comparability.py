"""What differs between the two sides besides the code under test: the facts of result.json's
``environment`` (package versions, accelerator, Python, platform, harness commit and whether it
had uncommitted changes, container) and the settings of paired rows (precision, batch, a
default that changed, a dataset revision).

Which facts matter, and what a difference in one does, is a table (:data:`FACTS`), not code:
a different accelerator makes every efficiency figure of the row "not comparable", different
CPU core or thread counts its timings; a fact marked ``ignored`` (the host name, SLURM job ids)
is never listed. A key the table does not name is listed under its own name and voids nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.compare.sides import Sample

NOT_RECORDED = "not recorded"
CPU = "cpu"  # environment.accelerator_info's type of a run without a GPU
ACCELERATOR_TYPE = "accelerator.type"

# aspects (harness.compare.measures.ASPECTS) that a hardware difference voids; the bare-loop ratio
# is measured within one run on one machine, so it stays comparable across machines
HARDWARE = frozenset({"memory", "throughput", "time", "compile", "energy"})
TIMINGS = frozenset({"throughput", "time", "compile"})


@dataclass(frozen=True)
class Fact:
    key: str  # a flattened environment key; ending in ".": every key under it
    label: str
    voids: frozenset[str] = frozenset()  # aspects a difference makes "not comparable"
    ignored: bool = False  # differs from run to run without meaning anything (host, job ids)

    def matches(self, key: str) -> bool:
        # "slurm." also names the empty mapping a run outside SLURM records ("slurm": {})
        return key in (self.key, self.key.rstrip(".")) or (self.key.endswith(".") and key.startswith(self.key))


FACTS: tuple[Fact, ...] = (
    Fact("accelerator.type", "accelerator (GPU or CPU)", HARDWARE),
    Fact("accelerator.name", "accelerator model", HARDWARE),
    Fact("accelerator.device_count", "GPUs visible to a cell", HARDWARE),
    Fact("accelerator.cpu_count", "CPU cores", TIMINGS),
    Fact("accelerator.torch_threads", "torch threads", TIMINGS),
    Fact("accelerator.cuda", "CUDA version"),
    Fact("accelerator.bf16_supported", "bf16 support", ignored=True),  # follows from the model
    Fact("accelerator.visible_devices", "CUDA_VISIBLE_DEVICES", ignored=True),
    Fact("packages.", "package"),
    Fact("python", "Python"),
    Fact("platform", "platform"),
    Fact("git_commit", "harness commit"),
    Fact("git_dirty", "harness with uncommitted changes"),
    Fact("container.", "container"),
    Fact("host", "host", ignored=True),
    Fact("slurm.", "SLURM job", ignored=True),
    Fact("hf_hub_offline", "HF_HUB_OFFLINE", ignored=True),
)


def fact_of(key: str) -> Fact:
    return next((f for f in FACTS if f.matches(key)), Fact(key, key))


@dataclass
class Difference:
    kind: str  # environment | setting
    key: str
    label: str
    new: list[str]
    ref: list[str]
    effect: str = ""  # e.g. "efficiency not comparable"
    rows: int = 0  # settings: the paired rows where it differs

    @property
    def shown(self) -> str:
        label = self.label if self.label == self.key else f"{self.label} ({self.key})"
        return f"{label}: {', '.join(self.ref)} → {', '.join(self.new)}"


def _values(samples: Iterable[Sample], key: str, attribute: str) -> list[str]:
    values = {getattr(s, attribute).get(key, NOT_RECORDED) for s in samples if getattr(s, attribute)}
    return sorted(values)


def _effect(voids: frozenset[str]) -> str:
    if voids >= HARDWARE:
        return "efficiency not comparable"
    return f"{', '.join(sorted(voids))} not comparable" if voids else ""


def environment_differences(new: list[Sample], ref: list[Sample]) -> list[Difference]:
    """The environment facts whose values differ between the two sides' cells (ignored facts left out)."""
    keys = sorted({k for s in (*new, *ref) for k in s.facts})
    differences = []
    for key in keys:
        fact = fact_of(key)
        if fact.ignored:
            continue
        new_values, ref_values = _values(new, key, "facts"), _values(ref, key, "facts")
        if new_values and ref_values and new_values != ref_values:
            recorded = NOT_RECORDED not in new_values and NOT_RECORDED not in ref_values
            differences.append(
                Difference(
                    "environment", key, fact.label, new_values, ref_values, _effect(fact.voids) if recorded else ""
                )
            )
    return differences


def voided(new: list[Sample], ref: list[Sample]) -> dict[str, list[str]]:
    """Aspect -> the recorded facts whose difference makes it not comparable for these cells."""
    out: dict[str, list[str]] = {}
    for difference in environment_differences(new, ref):
        if difference.effect:
            for aspect in fact_of(difference.key).voids:
                out.setdefault(aspect, []).append(difference.key)
    return out


def setting_differences(pairs: Iterable[tuple[list[Sample], list[Sample]]]) -> list[Difference]:
    """Settings whose values differ within paired rows (the cells of each side of one row), with
    the number of rows where they do: a default that changed shows here, not as a lost pairing."""
    found: dict[str, Difference] = {}
    for new, ref in pairs:
        keys = sorted({k for s in (*new, *ref) for k in s.settings})
        for key in keys:
            new_values, ref_values = _values(new, key, "settings"), _values(ref, key, "settings")
            if new_values and ref_values and new_values != ref_values:
                known = found.setdefault(key, Difference("setting", key, key, [], []))
                known.new = sorted({*known.new, *new_values})
                known.ref = sorted({*known.ref, *ref_values})
                known.rows += 1
    return list(found.values())


def ran_on_gpu(sample: Sample) -> bool:
    """Whether the cell ran on a GPU: its environment says so, or (no environment recorded, an
    MLflow run without its result.json) its memory was measured by the GPU allocator."""
    kind = sample.facts.get(ACCELERATOR_TYPE)
    if kind is not None:
        return kind != CPU
    return "gpu" in (sample.row.train_peak_measure, sample.row.eval_peak_measure)
