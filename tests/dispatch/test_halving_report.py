"""The report of a halving sweep: the selection table gives each rung's step and its points' metric
there, and where each point stopped; the sensitivity plot draws the rungs. A sweep without halving
has none of these columns."""

from __future__ import annotations

from dispatch_helpers import write_matrix
from test_halving import halving_dict

from harness.dispatch import submit
from harness.report import build_report


def test_the_report_shows_how_each_point_of_a_halving_fared(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    halved = write_matrix(tmp_path / "halved.yaml", halving_dict(tmp_path, "halved", {"eta": 3, "rungs": [1, 3]}))
    assert submit(halved).ok
    build_report(halved)
    folder = tmp_path / "halved" / "report"
    import pandas as pd

    table = pd.read_csv(folder / "sweep_selection.csv").to_dict("records")
    assert len(table) == 1
    row = table[0]
    # rungs 1 and 3, then the full budget (9): 3 points at step 1, 1 at step 3 and at step 9
    assert (row["rung_0_step"], row["rung_1_step"], row["rung_2_step"]) == (1, 3, 9)
    assert [len(row[f"rung_{i}"].split("; ")) for i in range(3)] == [3, 1, 1]
    stopped = row["stopped_at"].split("; ")
    assert sorted(s.rsplit(" ", 1)[1] for s in stopped) == ["1", "1", "9"]
    survivor = next(s.split(" ")[0] for s in stopped if s.endswith("step 9"))
    assert row["rung_2"].startswith(survivor) and row["rung_1"].startswith(survivor)
    assert row["selected"].endswith(survivor)
    # the pruned points are not failures: nothing left out
    assert "left out" not in str(row["status"])
    markdown = (folder / "report.md").read_text()
    assert "Rung 0" in markdown and "Stopped at" in markdown
    plots = list((folder / "plots").glob("sensitivity_*.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 0


def test_points_pruned_at_the_last_rung_do_not_hold_the_selection_open():
    """7 points, eta 3: 3 reach the second rung, 2 of them are pruned there and stay paused; the
    selection is the survivor's (it read "stage 1 running" with no selected value)."""
    from harness.report.load import CellRow
    from harness.report.sweeps import selection_table

    def point(rate: float, status: str, rungs: list[float], final: float | None = None) -> CellRow:
        return CellRow(
            cell_id=f"c{rate}",
            task="emotion",
            model="m",
            method="lora",
            seed=0,
            status=status,
            stage="select",
            point={"train.learning_rate": rate},
            select="f1_macro/validation/max",
            metrics={"f1_macro": final} if final is not None else {},
            rungs=[(step, {"f1_macro": value}) for step, value in zip((33, 99), rungs)],
            max_steps=300,
        )

    rows = [point(r, "paused", [0.1]) for r in (1e-4, 2e-4, 3e-4, 4e-4)]
    rows += [point(5e-4, "paused", [0.3, 0.5]), point(6e-4, "success", [0.4, 0.6], final=0.8)]
    rows += [point(7e-4, "paused", [0.35, 0.4])]
    (row,) = selection_table(rows).data.to_dict("records")
    assert row["selected"] == "train.learning_rate=0.0006" and row["selected_f1_macro"] == 0.8
    assert row["status"] == "ok"


def test_a_sweep_without_halving_has_no_rung_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = halving_dict(tmp_path, "full", None)
    data["seeds"] = [0]
    data["defaults"]["train"]["max_steps"] = 2
    full = write_matrix(tmp_path / "full.yaml", data)
    assert submit(full).ok
    build_report(full)
    table = __import__("pandas").read_csv(tmp_path / "full" / "report" / "sweep_selection.csv")
    assert not [c for c in table.columns if c.startswith("rung_") or c == "stopped_at"]
    assert "Rung 0" not in (tmp_path / "full" / "report" / "report.md").read_text()
