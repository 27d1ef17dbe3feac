"""The halving benchmark's matrices (bench/bench_halving.py): what their comments and the README
say of them holds: the rungs, 7 points per method, the same cells under halving and the full
grid, and demo-sweep's cells among them (its figures are the full grid's)."""

from __future__ import annotations

from pathlib import Path

from harness.matrix import load_matrix

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def _points(name: str) -> dict[str, list[str]]:
    matrix = load_matrix(JOBS / name)
    return {s.method: sorted(c.cell_id for c in s.points) for s in matrix.selections}


def test_rungs_and_grids():
    rungs = {
        name: {s.method: s.rungs for s in load_matrix(JOBS / name).selections}
        for name in ("minilm-halving.yaml", "minilm-halving-late.yaml", "minilm-halving-full-grid.yaml")
    }
    assert all(r == [33, 99, 300] for r in rungs["minilm-halving.yaml"].values())
    assert all(r == [100, 300] for r in rungs["minilm-halving-late.yaml"].values())
    assert all(r == [] for r in rungs["minilm-halving-full-grid.yaml"].values())
    halving = _points("minilm-halving.yaml")
    assert sorted(halving) == ["full", "ia3", "loha", "lora"] and all(len(ids) == 7 for ids in halving.values())


def test_the_same_cells_under_halving_and_the_full_grid_and_demo_sweeps_among_them():
    halving, late, full = (
        _points(n) for n in ("minilm-halving.yaml", "minilm-halving-late.yaml", "minilm-halving-full-grid.yaml")
    )
    assert halving == late == full
    demo = _points("demo-sweep.yaml")
    assert all(set(ids) <= set(full[method]) for method, ids in demo.items())
