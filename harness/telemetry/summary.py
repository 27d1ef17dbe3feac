"""Per-phase summaries of telemetry rows: a pure function, reusable by reports.

Conventions (documented once here, relied on by tests and reports):

* A *sample* is one sampling instant (one ``seq``); the NVML backend writes one
  row per device per sample.
* The interval between two consecutive samples belongs to the phase of the
  *later* sample: its gap, its counter-energy delta and its integrated power.
* Utilisation statistics are over rows (device-samples); memory and power are
  summed over the job's devices per sample, then aggregated (peak / mean).
* ``idle_share``: share of readings below ``idle_threshold_pct`` (5 %) of
  kernel-active time (GPU) or of one core summed over the process tree (host).
* ``duration_s`` comes from the parent's phase markers when given (exact), else
  from the sum of the intervals attributed to the phase.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .schema import HOST_COLUMNS, NVML_COLUMNS, parse_value

SUMMARY_SCHEMA = 1
IDLE_THRESHOLD_PCT = 5.0
ALL = "all"
# Clock-event bits that mean "slowed down": SW power cap, HW slowdown, SW thermal,
# HW thermal, HW power brake (not GPU-idle 0x1 or application-clocks 0x2).
THROTTLE_SLOWDOWN_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80
METRIC_PREFIX = {"nvml": "gpu", "host": "host"}
# Keys of the sampler's meta record copied into the summary.
META_KEYS = (
    "interval_s",
    "devices",
    "unsupported_devices",
    "nvml_unavailable_reason",
    "field_errors",
    "transient_errors",
    "driver_version",
    "cuda_visible_devices",
    "cpu_count",
    "root_pid",
    "notes",
    "sample_errors",
)
_NON_FIELD_COLUMNS = frozenset({"device_index", "nvml_index", "device_uuid", "device_name"})


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None if empty."""
    if not values:
        return None
    a = sorted(values)
    pos = (len(a) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return a[lo] + (a[hi] - a[lo]) * (pos - lo)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _max(values: Sequence[float]) -> float | None:
    return max(values) if values else None


def _normalize_rows(rows: Any) -> list[dict[str, Any]]:
    if hasattr(rows, "to_dict"):  # pandas DataFrame, without importing pandas
        rows = rows.to_dict("records")
    out = [{k: parse_value(k, v) for k, v in dict(r).items()} for r in rows]
    out = [r for r in out if r.get("t_rel_s") is not None]
    out.sort(key=lambda r: (r.get("seq") if r.get("seq") is not None else -1, r["t_rel_s"], r.get("device_index") or 0))
    return out


def infer_backend(rows: Sequence[Mapping[str, Any]]) -> str | None:
    if not rows:
        return None
    if "util_kernel_active_pct" in rows[0]:
        return "nvml"
    if "cpu_util_pct" in rows[0]:
        return "host"
    return None


def _samples(rows: list[dict[str, Any]]) -> list[tuple[float, str, list[dict[str, Any]]]]:
    """Group rows into samples: (t_rel_s, phase, rows), in time order."""
    by_seq: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_seq[r.get("seq") if r.get("seq") is not None else r["t_rel_s"]].append(r)
    samples = [(g[0]["t_rel_s"], str(g[0].get("phase") or ""), g) for g in by_seq.values()]
    samples.sort(key=lambda s: s[0])
    return samples


def _col(rows: Iterable[Mapping[str, Any]], col: str) -> list[float]:
    return [float(r[col]) for r in rows if r.get(col) is not None]


def _sum_per_sample(samples: Iterable[tuple[float, str, list[dict[str, Any]]]], col: str) -> list[float]:
    out = []
    for _, _, rs in samples:
        vals = _col(rs, col)
        if vals:
            out.append(sum(vals))
    return out


def _device_energy(
    rows: list[dict[str, Any]],
) -> tuple[dict[str, float], dict[str, int], str | None]:
    """Energy (J) per phase of one device's rows (time-ordered), resets per phase, source."""
    energy: dict[str, float] = defaultdict(float)
    resets: dict[str, int] = defaultdict(int)
    counter = [(r["energy_mj"], str(r.get("phase") or "")) for r in rows if r.get("energy_mj") is not None]
    if len(counter) >= 2:
        for (a, _), (b, phase) in zip(counter, counter[1:]):
            if b < a:  # counter reset (driver reload) or wrap: the delta is meaningless
                resets[phase] += 1
            else:
                energy[phase] += (b - a) / 1000.0
        return energy, resets, "counter"
    power = [(r["t_rel_s"], r["power_mw"], str(r.get("phase") or "")) for r in rows if r.get("power_mw") is not None]
    if len(power) >= 2:
        for (ta, pa, _), (tb, pb, phase) in zip(power, power[1:]):
            energy[phase] += (pa + pb) / 2.0 / 1000.0 * (tb - ta)
        return energy, resets, "integrated_power"
    return energy, resets, None


def _gpu_stats(
    samples: list[tuple[float, str, list[dict[str, Any]]]],
    phase: str | None,
    energy: dict[str, dict[str, float]],
    resets: dict[str, dict[str, int]],
    sources: dict[str, str | None],
    idle_threshold_pct: float,
) -> dict[str, Any]:
    rows = [r for _, _, rs in samples for r in rs]
    util = _col(rows, "util_kernel_active_pct")
    mem_ctrl = _col(rows, "util_mem_ctrl_pct")
    power_w = [p / 1000.0 for p in _sum_per_sample(samples, "power_mw")]
    throttle = [int(v) for v in _col(rows, "throttle_reasons")]
    totals: dict[Any, float] = {}
    for r in rows:
        if r.get("mem_total_bytes") is not None:
            totals[r.get("device_uuid") or r.get("device_index")] = float(r["mem_total_bytes"])
    used_sources = {s for s in sources.values() if s is not None}
    energy_j: float | None = None
    n_resets = 0
    if used_sources:
        energy_j = 0.0
        for per_phase in energy.values():
            energy_j += sum(per_phase.values()) if phase is None else per_phase.get(phase, 0.0)
        for counts in resets.values():
            n_resets += sum(counts.values()) if phase is None else counts.get(phase, 0)
    mem_used = _sum_per_sample(samples, "mem_used_bytes")
    proc_mem = _sum_per_sample(samples, "proc_mem_bytes")
    return {
        "util_mean": _mean(util),
        "util_median": percentile(util, 50),
        "util_p95": percentile(util, 95),
        "util_max": _max(util),
        "idle_share": (sum(1 for u in util if u < idle_threshold_pct) / len(util)) if util else None,
        "mem_ctrl_util_mean": _mean(mem_ctrl),
        "mem_ctrl_util_max": _max(mem_ctrl),
        "mem_used_peak_bytes": int(max(mem_used)) if mem_used else None,
        "mem_total_bytes": int(sum(totals.values())) if totals else None,
        "proc_mem_peak_bytes": int(max(proc_mem)) if proc_mem else None,
        "power_mean_w": _mean(power_w),
        "power_peak_w": _max(power_w),
        "energy_j": energy_j,
        "energy_source": (used_sources.pop() if len(used_sources) == 1 else "mixed") if used_sources else None,
        "energy_counter_resets": n_resets,
        "sm_clock_mean_mhz": _mean(_col(rows, "sm_clock_mhz")),
        "temp_max_c": _max(_col(rows, "temp_c")),
        "throttled_share": (sum(1 for t in throttle if t & THROTTLE_SLOWDOWN_MASK) / len(throttle))
        if throttle
        else None,
    }


def _host_stats(samples: list[tuple[float, str, list[dict[str, Any]]]], idle_threshold_pct: float) -> dict[str, Any]:
    rows = [r for _, _, rs in samples for r in rs]
    cpu = _col(rows, "cpu_util_pct")
    norm = _col(rows, "cpu_util_norm_pct")
    rss = _col(rows, "rss_bytes")
    node_mem = _col(rows, "node_mem_used_bytes")
    nprocs = _col(rows, "n_procs")
    return {
        "cpu_util_mean": _mean(cpu),
        "cpu_util_median": percentile(cpu, 50),
        "cpu_util_p95": percentile(cpu, 95),
        "cpu_util_max": _max(cpu),
        "cpu_util_norm_mean": _mean(norm),
        "cpu_util_norm_p95": percentile(norm, 95),
        "cpu_util_norm_max": _max(norm),
        "idle_share": (sum(1 for c in cpu if c < idle_threshold_pct) / len(cpu)) if cpu else None,
        "rss_peak_bytes": int(max(rss)) if rss else None,
        "rss_mean_bytes": _mean(rss),
        "n_procs_max": int(max(nprocs)) if nprocs else None,
        "node_cpu_util_mean": _mean(_col(rows, "node_cpu_util_pct")),
        "node_mem_used_peak_bytes": int(max(node_mem)) if node_mem else None,
    }


def _markers(markers: Iterable[Any] | None) -> list[tuple[str, float]]:
    out = []
    for m in markers or ():
        if isinstance(m, Mapping):
            out.append((str(m["phase"]), float(m["t_rel_s"])))
        elif hasattr(m, "phase"):
            out.append((str(m.phase), float(m.t_rel_s)))
        else:
            out.append((str(m[0]), float(m[1])))
    out.sort(key=lambda m: m[1])
    return out


def summarize(
    rows: Any,
    *,
    markers: Iterable[Any] | None = None,
    t_end_rel_s: float | None = None,
    backend: str | None = None,
    meta: Mapping[str, Any] | None = None,
    idle_threshold_pct: float = IDLE_THRESHOLD_PCT,
) -> dict[str, Any]:
    """Summaries per phase (order of first appearance) plus ``"all"``.

    ``rows``: dicts (typed or CSV strings) or a pandas DataFrame. ``markers``:
    ``PhaseMarker``s, dicts or ``(phase, t_rel_s)`` pairs; ``t_end_rel_s`` closes
    the last one. ``meta``: the sampler's meta record, merged in.
    """
    rows = _normalize_rows(rows)
    meta = dict(meta or {})
    backend = backend or meta.get("backend") or infer_backend(rows)
    samples = _samples(rows)
    marks = _markers(markers)

    order: list[str] = []
    for phase in [m[0] for m in marks] + [s[1] for s in samples]:
        if phase not in order:
            order.append(phase)

    # intervals between consecutive samples, attributed to the later sample's phase
    gaps: dict[str, list[float]] = defaultdict(list)
    for (ta, _, _), (tb, phase, _) in zip(samples, samples[1:]):
        gaps[phase].append(tb - ta)
    all_gaps = [g for gs in gaps.values() for g in gs]

    durations: dict[str, float] = defaultdict(float)
    total_duration: float | None
    if marks:
        end = t_end_rel_s if t_end_rel_s is not None else (samples[-1][0] if samples else marks[-1][1])
        end = max(end, marks[-1][1])
        for (phase, t), (_, t_next) in zip(marks, marks[1:] + [("", end)]):
            durations[phase] += t_next - t
        total_duration = end - marks[0][1]
    else:
        for phase, gs in gaps.items():
            durations[phase] = sum(gs)
        total_duration = samples[-1][0] - samples[0][0] if samples else None

    energy: dict[str, dict[str, float]] = {}
    resets: dict[str, dict[str, int]] = {}
    sources: dict[str, str | None] = {}
    if backend == "nvml":
        by_dev: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_dev[str(r.get("device_uuid") or r.get("device_index"))].append(r)
        for dev, drows in by_dev.items():
            drows.sort(key=lambda r: r["t_rel_s"])
            energy[dev], resets[dev], sources[dev] = _device_energy(drows)

    def stats(phase: str | None) -> dict[str, Any]:
        sel = samples if phase is None else [s for s in samples if s[1] == phase]
        phase_gaps = all_gaps if phase is None else gaps.get(phase, [])
        base: dict[str, Any] = {
            "sample_count": len(sel),
            "duration_s": total_duration if phase is None else durations.get(phase, 0.0),
            "max_gap_s": max(phase_gaps) if phase_gaps else None,
        }
        if backend == "nvml":
            base.update(_gpu_stats(sel, phase, energy, resets, sources, idle_threshold_pct))
        elif backend == "host":
            base.update(_host_stats(sel, idle_threshold_pct))
        return base

    phases = {phase: stats(phase) for phase in order}
    phases[ALL] = stats(None)

    columns = NVML_COLUMNS if backend == "nvml" else HOST_COLUMNS if backend == "host" else ()
    never_seen = {c for c in columns if c not in _NON_FIELD_COLUMNS and rows and all(r.get(c) is None for r in rows)}
    out: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "backend": backend,
        "idle_threshold_pct": idle_threshold_pct,
        "sample_count": len(samples),
        "phase_order": order,
        "unavailable_fields": sorted(set(meta.get("unavailable_fields") or []) | never_seen),
        "phases": phases,
    }
    for key in META_KEYS:
        if key in meta:
            out[key] = meta[key]
    if marks:
        out["phase_markers"] = [{"phase": p, "t_rel_s": t} for p, t in marks]
    return out


_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :]")


def metrics_from_summary(summary: Mapping[str, Any]) -> dict[str, float]:
    """Flatten a summary for MLflow: ``{gpu|host}/{phase}/{stat}`` -> float (numbers only)."""
    prefix = METRIC_PREFIX.get(str(summary.get("backend")))
    if prefix is None:
        return {}
    out: dict[str, float] = {}
    for phase, stats in (summary.get("phases") or {}).items():
        name = _METRIC_UNSAFE.sub("_", str(phase)) or "none"
        for key, value in stats.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            out[f"{prefix}/{name}/{key}"] = float(value)
    return out
