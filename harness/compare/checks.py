"""The checks of a paired row: quality over seeds, efficiency against a relative bound.

**Quality.** Per metric, the difference NEW − REFERENCE with its 95 % interval: a paired t
interval when both sides finished the same seeds (two or more), else Welch's (Welch–Satterthwaite
degrees of freedom, :func:`harness.report.stats.difference`). A regression is a drop larger than
the tolerance with 95 % confidence: the whole interval lies below −tolerance. An improvement is
the mirror image. One seed on each side has no interval: "untested". A row that finished no seed
on the new side while the reference finished some has failed.

**Efficiency.** Per measure, the change of the mean over seeds, ``new / reference − 1``, against
the measure's bound ``(lo, hi)``: beyond it on the side the measure calls worse is a regression,
beyond it on the other side an improvement. A difference of hardware, or of how memory was
measured, makes the figure "not comparable".
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.compare.comparability import ran_on_gpu, voided
from harness.compare.gate import Gate
from harness.compare.measures import MEASURES, QUALITY_ASPECT, Measure, quality_metrics
from harness.compare.pairing import Pair
from harness.compare.sides import Sample
from harness.report.stats import Summary, difference, summarize

POINTS = 100.0  # quality figures are in [0, 1]; tolerances and tables are in points

REGRESSION = "regression"
IMPROVEMENT = "improvement"
OK = "ok"
NOT_COMPARABLE = "not comparable"
UNTESTED = "untested"
FAILED = "failed"  # the new side finished no seed of a row the reference finished
FAILING = frozenset({REGRESSION, FAILED})


@dataclass
class Finding:
    row: str  # the paired row's label
    aspect: str
    name: str  # metric or measure
    label: str
    unit: str
    new: Summary
    ref: Summary
    change: float | None = None  # quality: difference in points; efficiency: relative change
    low: float | None = None  # quality: the difference's 95 % interval, in points
    high: float | None = None
    threshold: str = ""  # the tolerance or bound it was held to
    test: str = ""
    verdict: str = OK
    gated: bool = False
    reason: str = ""  # why not comparable / untested / failed

    @property
    def fails(self) -> bool:
        """Whether it decides the exit status: a regression (or a failed row) of a gated aspect."""
        return self.gated and self.verdict in FAILING


def _finished(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.finished]


def _by_seed(samples: list[Sample], metric: str) -> dict[int, float]:
    return {s.row.seed: s.row.metrics[metric] for s in _finished(samples) if metric in s.row.metrics}


def quality_difference(new: dict[int, float], ref: dict[int, float]) -> tuple[Summary, str]:
    """NEW − REFERENCE with its 95 % interval, and the test's name: paired when both sides
    finished the same seeds (at least two), Welch otherwise."""
    if set(new) == set(ref) and len(new) >= 2:
        seeds = sorted(new)
        return summarize([new[s] - ref[s] for s in seeds]), f"paired t, {len(seeds)} seeds"
    return difference(summarize(list(new.values())), summarize(list(ref.values()))), (
        f"Welch t, {len(new)} vs {len(ref)} seeds"
    )


def quality_findings(pair: Pair, gate: Gate) -> list[Finding]:
    scoring = (pair.ref or pair.new)[0].row.scoring
    new_done, ref_done = bool(_finished(pair.new)), bool(_finished(pair.ref))
    findings = []
    for metric in quality_metrics(scoring):
        new, ref = _by_seed(pair.new, metric), _by_seed(pair.ref, metric)
        if not new and not ref and not (ref_done and not new_done):
            continue  # neither side has the metric
        tolerance = gate.tolerance_for(metric)
        finding = Finding(
            pair.label,
            QUALITY_ASPECT,
            metric,
            metric,
            "points",
            summarize(list(new.values())),
            summarize(list(ref.values())),
            threshold=f"−{tolerance:g} pt",
            gated=gate.gates_quality(),
        )
        if not ref_done:
            finding.verdict, finding.reason = NOT_COMPARABLE, "the reference finished no seed"
        elif not new_done:
            statuses = sorted({s.row.status for s in pair.new})
            finding.verdict, finding.reason = FAILED, f"no finished seed ({', '.join(statuses)})"
        elif not new or not ref:
            side = "new side" if not new else "reference"
            finding.verdict, finding.reason = NOT_COMPARABLE, f"not recorded on the {side}"
        else:
            _test(finding, new, ref, tolerance)
        findings.append(finding)
    return findings


def _test(finding: Finding, new: dict[int, float], ref: dict[int, float], tolerance: float) -> None:
    diff, finding.test = quality_difference(new, ref)
    assert diff.mean is not None
    finding.change = diff.mean * POINTS
    if diff.half_width is None:
        finding.verdict, finding.reason = UNTESTED, "one seed on each side: no interval"
        return
    finding.low = (diff.mean - diff.half_width) * POINTS
    finding.high = (diff.mean + diff.half_width) * POINTS
    finding.verdict = REGRESSION if finding.high < -tolerance else IMPROVEMENT if finding.low > tolerance else OK


def efficiency_findings(pair: Pair, gate: Gate) -> list[Finding]:
    new, ref = _finished(pair.new), _finished(pair.ref)
    not_comparable = voided(new, ref)
    on_gpu = bool(new) and all(ran_on_gpu(s) for s in (*new, *ref))
    findings = []
    for measure in MEASURES.values():
        new_values = [v for v in (s.value(measure) for s in new) if v is not None]
        ref_values = [v for v in (s.value(measure) for s in ref) if v is not None]
        if not new_values and not ref_values:
            continue
        bound = gate.bound_for(measure)
        finding = Finding(
            pair.label,
            measure.aspect,
            measure.name,
            measure.label,
            measure.unit,
            summarize(new_values),
            summarize(ref_values),
            threshold=f"{bound[0]:+.0%} … {bound[1]:+.0%}",
            test=f"relative bound, {measure.better} is better",
            gated=gate.gates(measure, on_gpu),
        )
        finding.verdict, finding.reason = _efficiency_verdict(measure, finding, new, ref, not_comparable, bound)
        findings.append(finding)
    return findings


def _efficiency_verdict(
    measure: Measure,
    finding: Finding,
    new: list[Sample],
    ref: list[Sample],
    not_comparable: dict[str, list[str]],
    bound: tuple[float, float],
) -> tuple[str, str]:
    if measure.aspect in not_comparable:
        return NOT_COMPARABLE, f"differs: {', '.join(not_comparable[measure.aspect])}"
    if finding.new.mean is None or finding.ref.mean is None:
        side = "new side" if finding.new.mean is None else "reference"
        return NOT_COMPARABLE, f"not measured on the {side}"
    how = {m for m in (s.measured_by(measure) for s in (*new, *ref)) if m is not None}
    if len(how) > 1:
        return NOT_COMPARABLE, f"measured differently ({' vs '.join(sorted(how))})"
    if finding.ref.mean == 0:
        return NOT_COMPARABLE, "the reference is 0"
    change = finding.new.mean / finding.ref.mean - 1
    finding.change = change
    if measure.worse(change, bound):
        return REGRESSION, ""
    return (IMPROVEMENT, "") if measure.better_than(change, bound) else (OK, "")


def pair_findings(pair: Pair, gate: Gate) -> list[Finding]:
    return [*quality_findings(pair, gate), *efficiency_findings(pair, gate)]
