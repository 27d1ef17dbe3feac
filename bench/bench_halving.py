"""Bench: successive halving against the full grid, per method, and what tuning costs (issue 21).

Runs ``jobs/minilm-halving.yaml`` (MiniLM-L6 on emotion; LoRA, LoHa, IA3 and full fine-tuning,
a 7-point learning-rate grid each, eta 3) and ``jobs/minilm-halving-full-grid.yaml`` (the same
cells, every grid point to its full budget), one after the other with the local executor, then
reads every cell's result.json and prints, per method:

- the rate each selects (and every point's validation metric, at the rung where it stopped);
- the test metrics of each selection over the 3 seeds (mean ± 95 % t interval) and the
  difference halving − full grid, paired by seed (identical cells when both select the same rate:
  the runs are deterministic);
- the compute of each (device-seconds: result.json's ``efficiency.cost``, core-seconds here),
  and relative to an untuned 3-seed study of the same cells (3 full-budget runs at one rate: the
  mean cost of the stage-2 cells that trained, times the number of seeds).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_halving.py [--no-run] [--json PATH]

``--no-run`` reads what the two matrices have already (``harness matrix`` skips finished cells
anyway, so a second run only completes what is missing). About 90 minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.matrix import load_matrix  # noqa: E402
from harness.names import FINAL_STAGE, SELECT_STAGE  # noqa: E402
from harness.report.load import MISSING, CellRow, rows_from_matrix  # noqa: E402
from harness.report.stats import Summary, summarize  # noqa: E402
from harness.result import CORRUPT  # noqa: E402

HALVING = REPO / "jobs" / "minilm-halving.yaml"
FULL_GRID = REPO / "jobs" / "minilm-halving-full-grid.yaml"
LR = "train.learning_rate"
TEST_METRICS = ("accuracy", "f1_macro")


def run(path: Path) -> int:
    command = [sys.executable, "-m", "harness.cli", "matrix", str(path), "--executor", "local", "--wait"]
    return subprocess.run(command, cwd=REPO, check=False).returncode


def rows(path: Path) -> list[CellRow]:
    """Every cell of the matrix that has a result (grid points with their rungs, stage-2 seeds)."""
    return [r for r in rows_from_matrix(load_matrix(path)) if r.status not in (MISSING, CORRUPT)]


def _summary(s: Summary) -> dict[str, Any]:
    return {"n": s.n, "mean": s.mean, "half_width": s.half_width, "low": s.low, "high": s.high}


def method_figures(all_rows: list[CellRow], method: str, metric: str) -> dict[str, Any]:
    mine = [r for r in all_rows if r.method == method]
    grid = sorted((r for r in mine if r.stage == SELECT_STAGE), key=lambda r: r.point.get(LR, 0.0))
    seeds = sorted((r for r in mine if r.stage == FINAL_STAGE), key=lambda r: r.seed)
    selected = {r.point.get(LR, r.learning_rate) for r in seeds} - {None}
    # a seed that trained: the price of one run of an untuned study (the reused first seed only scored)
    trained = [r.device_s for r in seeds if r.reused_device_s is None and r.device_s is not None]
    grid_s = sum(r.device_s or 0.0 for r in grid)
    seeds_s = sum(r.device_s or 0.0 for r in seeds)
    untuned_s = statistics.mean(trained) * len(seeds) if trained else None
    return {
        "points": [
            {
                "learning_rate": r.point.get(LR),
                "status": r.status,
                "stopped_at_step": r.rungs[-1][0] if r.status == "paused" and r.rungs else r.max_steps,
                "rungs": [{"step": step, metric: m.get(metric)} for step, m in r.rungs],
                f"validation_{metric}": r.metrics.get(metric),
                "device_s": r.device_s,
            }
            for r in grid
        ],
        "selected_learning_rate": selected.pop() if len(selected) == 1 else sorted(selected),
        "test": {
            name: {
                "seeds": {r.seed: r.metrics.get(name) for r in seeds},
                **_summary(summarize([r.metrics.get(name) for r in seeds])),
            }
            for name in TEST_METRICS
        },
        "device_s": {"grid": grid_s, "seeds": seeds_s, "total": grid_s + seeds_s, "untuned_3_seeds": untuned_s},
        "vs_untuned": (grid_s + seeds_s) / untuned_s if untuned_s else None,
        "measure": next((r.cost_measure for r in mine if r.cost_measure), None),
    }


def paired(a: dict[str, Any], b: dict[str, Any], name: str) -> dict[str, Any]:
    """a − b seed by seed, with the t interval of the differences."""
    xa, xb = a["test"][name]["seeds"], b["test"][name]["seeds"]
    common = sorted(set(xa) & set(xb))
    diffs = [xa[s] - xb[s] for s in common if xa[s] is not None and xb[s] is not None]
    return _summary(summarize(diffs)) | {"seeds": common}


def compare(halving: list[CellRow], full: list[CellRow], metric: str) -> dict[str, Any]:
    methods = list(dict.fromkeys(r.method for r in full + halving))
    out: dict[str, Any] = {"metric_selected_on": metric, "methods": {}}
    totals = {"halving": 0.0, "full_grid": 0.0, "untuned": 0.0}
    for method in methods:
        h, f = method_figures(halving, method, metric), method_figures(full, method, metric)
        full_interval = f["test"][metric]
        inside = (
            full_interval["low"] is not None
            and h["test"][metric]["mean"] is not None
            and full_interval["low"] <= h["test"][metric]["mean"] <= full_interval["high"]
        )
        out["methods"][method] = {
            "halving": h,
            "full_grid": f,
            "same_selection": h["selected_learning_rate"] == f["selected_learning_rate"]
            if h["selected_learning_rate"] and f["selected_learning_rate"]
            else None,
            "halving_minus_full_grid": {name: paired(h, f, name) for name in TEST_METRICS},
            "halving_mean_inside_full_grid_interval": inside,
            "halving_device_s_vs_full_grid": h["device_s"]["total"] / f["device_s"]["total"]
            if f["device_s"]["total"]
            else None,
        }
        totals["halving"] += h["device_s"]["total"]
        totals["full_grid"] += f["device_s"]["total"]
        # the untuned study's runs: the full grid's trained seeds (the same kind of run either way)
        totals["untuned"] += f["device_s"]["untuned_3_seeds"] or 0.0
    agree = sum(bool(m["same_selection"]) for m in out["methods"].values())
    held = sum(
        bool(m["same_selection"] or m["halving_mean_inside_full_grid_interval"]) for m in out["methods"].values()
    )
    out["all"] = {
        "device_s": totals,
        "halving_vs_untuned": totals["halving"] / totals["untuned"] if totals["untuned"] else None,
        "full_grid_vs_untuned": totals["full_grid"] / totals["untuned"] if totals["untuned"] else None,
        "halving_vs_full_grid": totals["halving"] / totals["full_grid"] if totals["full_grid"] else None,
        "same_selection": f"{agree}/{len(methods)}",
        "selection_holds": f"{held}/{len(methods)}",
    }
    return out


def _pm(s: dict[str, Any], scale: float = 100.0) -> str:
    if s["mean"] is None:
        return "-"
    hw = f" ± {s['half_width'] * scale:.2f}" if s["half_width"] is not None else ""
    return f"{s['mean'] * scale:.2f}{hw}"


def _times(ratio: float | None) -> str:
    return f"x{ratio:.2f}" if ratio is not None else "x-"


def render(result: dict[str, Any]) -> str:
    metric = result["metric_selected_on"]
    lines = []
    for method, m in result["methods"].items():
        h, f = m["halving"], m["full_grid"]
        lines.append(f"{method}:")
        for side, figures in (("full grid", f), ("halving", h)):
            points = ", ".join(
                f"{p['learning_rate']:g}: {p[f'validation_{metric}'] * 100:.1f}"
                + (f" (stopped at {p['stopped_at_step']})" if p["status"] == "paused" else "")
                for p in figures["points"]
                if p[f"validation_{metric}"] is not None
            )
            lines.append(f"  {side:9s} selects {figures['selected_learning_rate']}; validation {metric}: {points}")
            lines.append(
                f"  {'':9s} test accuracy {_pm(figures['test']['accuracy'])}, {metric} {_pm(figures['test'][metric])} "
                f"(3 seeds, 95 % t); {figures['device_s']['total']:.0f} {figures['measure'] or 'device-s'} "
                f"(grid {figures['device_s']['grid']:.0f}, seeds {figures['device_s']['seeds']:.0f}), "
                f"{_times(figures['vs_untuned'])} untuned"
            )
        d = m["halving_minus_full_grid"]
        lines.append(
            f"  same selection: {m['same_selection']}; halving - full grid (paired): accuracy {_pm(d['accuracy'])}, "
            f"{metric} {_pm(d[metric])}; compute {_times(m['halving_device_s_vs_full_grid'])} the full grid's"
        )
    a = result["all"]
    lines.append(
        f"all: halving {_times(a['halving_vs_untuned'])} an untuned 3-seed study, full grid "
        f"{_times(a['full_grid_vs_untuned'])}; halving {_times(a['halving_vs_full_grid'])} the full grid's compute; same selection {a['same_selection']}, "
        f"selection holds (same, or inside the full grid's interval) {a['selection_holds']}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="only read the results already there")
    parser.add_argument("--halving", type=Path, default=HALVING)
    parser.add_argument("--full-grid", type=Path, default=FULL_GRID)
    parser.add_argument("--json", type=Path, help="write every figure there (bench/results/ keeps the committed one)")
    args = parser.parse_args()
    if not args.no_run:
        for path in (args.halving, args.full_grid):
            if run(path) != 0:
                print(f"bench_halving: {path} did not end with every cell done; figures below are partial")
    metric = load_matrix(args.halving).selections[0].metric  # the same for every sweep of this file
    result = compare(rows(args.halving), rows(args.full_grid), metric)
    print(render(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
