"""What decides a comparison: the tolerance per quality metric, the bound per efficiency measure
and the aspects that gate the exit status. Read from the command line, or from a reference file
that stores its own (ReFrame keeps a bound with every reference value); checked up front, a bad
value is a one-line ``ConfigError``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from harness.compare.measures import (
    ASPECTS,
    DEFAULT_GATE,
    DEFAULT_TOLERANCE_POINTS,
    MEASURES,
    QUALITY_ASPECT,
    Measure,
    all_quality_metrics,
)
from harness.errors import ConfigError, shorten

ALL = "*"  # a tolerance or bound for every metric / measure


@dataclass(frozen=True)
class Gate:
    aspects: frozenset[str] = frozenset(DEFAULT_GATE)
    cpu_timings: bool = False  # gate throughput and time measured on a CPU too
    tolerance: Mapping[str, float] = field(default_factory=dict)  # metric (or ALL) -> points
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # measure, aspect or ALL -> (lo, hi)

    def tolerance_for(self, metric: str) -> float:
        return self.tolerance.get(metric, self.tolerance.get(ALL, DEFAULT_TOLERANCE_POINTS))

    def bound_for(self, measure: Measure) -> tuple[float, float]:
        for key in (measure.name, measure.aspect, ALL):
            if key in self.bounds:
                return self.bounds[key]
        return measure.bound

    def gates_quality(self) -> bool:
        return QUALITY_ASPECT in self.aspects

    def gates(self, measure: Measure, on_gpu: bool) -> bool:
        """Whether this measure's regression decides the exit status for a row run on this hardware."""
        return measure.aspect in self.aspects and (on_gpu or not measure.timing or self.cpu_timings)

    def over(self, base: Gate | None, *, aspects: bool, cpu_timings: bool) -> Gate:
        """This gate's settings where given (``aspects``/``cpu_timings``: given on the command
        line), the base's (a reference file's) elsewhere."""
        if base is None:
            return self
        return replace(
            self,
            aspects=self.aspects if aspects else base.aspects,
            cpu_timings=self.cpu_timings if cpu_timings else base.cpu_timings,
            tolerance={**_uncovered(base.tolerance, self.tolerance), **self.tolerance},
            bounds={**_uncovered(base.bounds, self.bounds), **self.bounds},
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "aspects": [a for a in ASPECTS if a in self.aspects],
            "cpu_timings": self.cpu_timings,
            "tolerance_points": dict(self.tolerance),
            "bounds": {k: list(v) for k, v in self.bounds.items()},
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Gate:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: gate: expected a mapping")
        return cls(
            aspects=parse_aspects(data.get("aspects", list(DEFAULT_GATE)), where=f"{where}: gate.aspects"),
            cpu_timings=bool(data.get("cpu_timings", False)),
            tolerance=check_tolerance(
                dict(data.get("tolerance_points") or {}), where=f"{where}: gate.tolerance_points"
            ),
            bounds=check_bounds(
                {k: _pair(v, f"{where}: gate.bounds.{k}") for k, v in (data.get("bounds") or {}).items()},
                where=f"{where}: gate.bounds",
            ),
        )


def _covers(key: str, name: str) -> bool:
    """Whether a tolerance or bound given for ``key`` (ALL, an aspect, a metric or measure) applies to ``name``."""
    measure = MEASURES.get(name)
    return key in (ALL, name) or (measure is not None and key == measure.aspect)


def _uncovered(base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The base's entries that none given covers: ``--tolerance 2`` replaces every per-metric
    tolerance a reference file stores, ``--bound memory=...`` each memory measure's bound."""
    return {name: value for name, value in base.items() if not any(_covers(key, name) for key in given)}


def _pair(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where}: expected [lo, hi]")
    return float(value[0]), float(value[1])


def parse_aspects(value: str | Iterable[str], where: str = "--gate") -> frozenset[str]:
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if str(n).strip()]
    unknown = [n for n in names if n not in ASPECTS]
    if unknown:
        raise ConfigError(f"{where}: unknown aspect {shorten(unknown[0])}; valid: {', '.join(ASPECTS)}")
    return frozenset(names)


def _number(text: str, where: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ConfigError(f"{where}: {shorten(text)} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {shorten(text)} is not a finite number")
    return value


def _split(item: str) -> tuple[str, str]:
    name, sep, value = item.rpartition("=")
    return (name.strip() or ALL, value) if sep else (ALL, item)


def check_tolerance(tolerance: dict[str, Any], where: str = "--tolerance") -> dict[str, float]:
    known = all_quality_metrics()
    checked = {}
    for name, value in tolerance.items():
        if name != ALL and name not in known:
            raise ConfigError(f"{where}: unknown metric {shorten(name)}; valid: {', '.join(known)}")
        label = where if name == ALL else f"{where} {name}"
        points = _number(str(value), label)
        if points < 0:
            raise ConfigError(f"{label}: tolerance {points:g} is negative; give points >= 0 (default 1)")
        checked[name] = points
    return checked


def parse_tolerance(items: Iterable[str]) -> dict[str, float]:
    """``--tolerance 2`` (every metric) or ``--tolerance f1_macro=2`` (points, x100)."""
    return check_tolerance(dict(_split(item) for item in items))


def check_bounds(bounds: dict[str, tuple[float, float]], where: str = "--bound") -> dict[str, tuple[float, float]]:
    known = [*MEASURES, *(a for a in ASPECTS if a != QUALITY_ASPECT)]
    for name, (lo, hi) in bounds.items():
        if name != ALL and name not in known:
            raise ConfigError(f"{where}: unknown measure {shorten(name)}; valid: {', '.join(known)}")
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > 0 or hi < 0 or lo <= -1:
            raise ConfigError(
                f"{where if name == ALL else f'{where} {name}'}: bound ({lo:+.0%}, {hi:+.0%}) must hold 0 (lo <= 0 <= hi) with lo above -100 %"
            )
    return bounds


def parse_bounds(items: Iterable[str]) -> dict[str, tuple[float, float]]:
    """``--bound -5:10`` (every measure) or ``--bound memory=-10:5`` / ``--bound train_peak_bytes=-10:5``:
    percent, the relative change allowed below and above the reference."""
    bounds = {}
    for item in items:
        name, text = _split(item)
        lo, sep, hi = text.partition(":")
        if not sep:
            raise ConfigError(f"--bound {shorten(item)}: expected [MEASURE=]LO:HI in percent, e.g. memory=-10:10")
        label = "--bound" if name == ALL else f"--bound {name}"
        bounds[name] = (_number(lo, label) / 100, _number(hi, label) / 100)
    return check_bounds(bounds)
