"""Two sides paired and checked: the comparison the renderer and the exit status read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.compare.checks import Finding, pair_findings
from harness.compare.comparability import Difference, environment_differences, setting_differences
from harness.compare.gate import Gate
from harness.compare.pairing import Pairing, pair_sides
from harness.compare.sides import Side
from harness.errors import ConfigError


@dataclass
class Comparison:
    new: Side
    ref: Side
    gate: Gate
    pairing: Pairing
    findings: list[Finding] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.fails]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    @property
    def notes(self) -> list[str]:
        return [*self.new.notes, *self.ref.notes]


def compare_sides(new: Side, ref: Side, gate: Gate | None = None) -> Comparison:
    """Pair the sides and check every paired row. Raises ConfigError (exit 2) for a side without
    results or sides without a pairable row."""
    for side in (new, ref):
        if not side.has_results:
            raise ConfigError(f"{side.name} has no results: {side.source} (no cell has written a result.json)")
    gate = gate or Gate()
    pairing = pair_sides(new, ref)
    findings = [f for pair in pairing.pairs for f in pair_findings(pair, gate)]
    paired_new = [s for p in pairing.pairs for s in p.new]
    paired_ref = [s for p in pairing.pairs for s in p.ref]
    differences = [
        *environment_differences(paired_new, paired_ref),
        *setting_differences((p.new, p.ref) for p in pairing.pairs),
    ]
    return Comparison(new, ref, gate, pairing, findings, differences)


def default_output(new: Side) -> Path:
    """Where a comparison's files go: ``compare/`` in the new side's output folder, else ``./compare``."""
    return (new.output_dir or Path.cwd()) / "compare"
