"""summarize() / metrics_from_summary() on synthetic rows with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.telemetry import (
    HOST_COLUMNS,
    NVML_COLUMNS,
    metrics_from_summary,
    percentile,
    plot_timeline,
    read_rows,
    summarize,
)
from harness.telemetry.schema import COMMON_COLUMNS, CsvSink


def host_rows(spec: list[tuple[float, str, float | None, int]]) -> list[dict]:
    return [
        {
            "seq": i,
            "t_wall": 1e9 + t,
            "t_mono": 100 + t,
            "t_rel_s": t,
            "phase": ph,
            "n_procs": 2,
            "cpu_util_pct": cpu,
            "cpu_util_norm_pct": None if cpu is None else cpu / 4,
            "rss_bytes": rss,
        }
        for i, (t, ph, cpu, rss) in enumerate(spec)
    ]


def gpu_rows(samples: list[tuple[float, str, list[dict]]]) -> list[dict]:
    rows = []
    for seq, (t, ph, devs) in enumerate(samples):
        for idx, d in enumerate(devs):
            rows.append(
                {
                    "seq": seq,
                    "t_rel_s": t,
                    "t_wall": 1e9 + t,
                    "t_mono": t,
                    "phase": ph,
                    "device_index": idx,
                    "device_uuid": f"GPU-{idx}",
                    "device_name": "Fake",
                    **d,
                }
            )
    return rows


def test_percentile_matches_numpy() -> None:
    vals = [3.0, 1.0, 7.0, 2.5, 9.0, 4.0]
    for q in (0, 50, 95, 100):
        assert percentile(vals, q) == pytest.approx(np.percentile(vals, q))
    assert percentile([], 50) is None


def test_host_summary_phases_gaps_and_idle_share() -> None:
    rows = host_rows(
        [
            (0.0, "load", None, 100),
            (0.2, "load", 2.0, 150),
            (0.4, "train", 100.0, 300),
            (0.6, "train", 180.0, 250),
            (1.1, "train", 150.0, 200),  # 0.5 s gap (a stall)
            (1.3, "eval", 4.0, 120),
        ]
    )
    s = summarize(rows)
    assert s["backend"] == "host"
    assert s["phase_order"] == ["load", "train", "eval"]
    train = s["phases"]["train"]
    assert train["sample_count"] == 3
    assert train["cpu_util_mean"] == pytest.approx((100 + 180 + 150) / 3)
    assert train["cpu_util_median"] == pytest.approx(150)
    assert train["cpu_util_max"] == 180
    assert train["cpu_util_norm_max"] == pytest.approx(45)
    assert train["rss_peak_bytes"] == 300
    assert train["max_gap_s"] == pytest.approx(0.5)
    assert train["idle_share"] == 0.0
    # without markers a phase's duration is the sum of intervals ending in it
    assert train["duration_s"] == pytest.approx(0.2 + 0.2 + 0.5)
    load = s["phases"]["load"]
    assert load["cpu_util_mean"] == 2.0 and load["idle_share"] == 1.0  # the first reading has no CPU value
    assert s["phases"]["eval"]["idle_share"] == 1.0
    whole = s["phases"]["all"]
    assert whole["sample_count"] == 6 and whole["duration_s"] == pytest.approx(1.3)
    assert whole["max_gap_s"] == pytest.approx(0.5)
    assert whole["idle_share"] == pytest.approx(2 / 5)


def test_markers_give_exact_durations_and_keep_unsampled_phases() -> None:
    rows = host_rows([(0.1, "load", 1.0, 1), (0.3, "train", 50.0, 1), (0.5, "train", 60.0, 1)])
    markers = [("none", 0.0), ("load", 0.05), ("warmup", 0.2), ("train", 0.21), ("eval", 0.55)]
    s = summarize(rows, markers=markers, t_end_rel_s=0.6)
    assert s["phase_order"] == ["none", "load", "warmup", "train", "eval"]
    assert s["phases"]["warmup"]["sample_count"] == 0  # shorter than the interval: duration only
    assert s["phases"]["warmup"]["duration_s"] == pytest.approx(0.01)
    assert s["phases"]["train"]["duration_s"] == pytest.approx(0.34)
    assert s["phases"]["eval"]["duration_s"] == pytest.approx(0.05)
    assert s["phases"]["all"]["duration_s"] == pytest.approx(0.6)
    assert [m["phase"] for m in s["phase_markers"]] == ["none", "load", "warmup", "train", "eval"]


def test_repeated_phase_is_aggregated() -> None:
    rows = host_rows([(0, "train", 10.0, 1), (1, "eval", 1.0, 1), (2, "train", 30.0, 1)])
    s = summarize(rows, markers=[("train", 0), ("eval", 0.5), ("train", 1.5)], t_end_rel_s=2.5)
    assert s["phases"]["train"]["cpu_util_mean"] == 20.0
    assert s["phases"]["train"]["duration_s"] == pytest.approx(1.5)


def test_gpu_summary_multi_device_sums_memory_and_power() -> None:
    dev = lambda util, used, power, energy: {  # noqa: E731
        "util_kernel_active_pct": util,
        "util_mem_ctrl_pct": util / 2,
        "mem_used_bytes": used,
        "mem_total_bytes": 1000,
        "proc_mem_bytes": used // 2,
        "power_mw": power,
        "energy_mj": energy,
        "sm_clock_mhz": 1500,
        "temp_c": 60,
        "throttle_reasons": 0x4 if util > 90 else 0x1,
    }
    rows = gpu_rows(
        [
            (0.0, "train", [dev(0, 100, 50_000, 10_000), dev(2, 200, 60_000, 20_000)]),
            (1.0, "train", [dev(95, 300, 300_000, 210_000), dev(80, 400, 250_000, 270_000)]),
            (2.0, "eval", [dev(50, 300, 100_000, 310_000), dev(0, 100, 80_000, 350_000)]),
        ]
    )
    s = summarize(rows)
    tr, ev, whole = s["phases"]["train"], s["phases"]["eval"], s["phases"]["all"]
    assert tr["sample_count"] == 2
    assert tr["util_mean"] == pytest.approx((0 + 2 + 95 + 80) / 4)
    assert tr["util_max"] == 95 and tr["idle_share"] == 0.5
    assert tr["mem_used_peak_bytes"] == 700  # summed over devices per sample
    assert tr["mem_total_bytes"] == 2000
    assert tr["proc_mem_peak_bytes"] == 350
    assert tr["power_peak_w"] == pytest.approx(550)
    assert tr["power_mean_w"] == pytest.approx((110 + 550) / 2)
    # counter deltas: the first interval (0 -> 1 s) ends in train
    assert tr["energy_j"] == pytest.approx((200_000 + 250_000) / 1000)
    assert ev["energy_j"] == pytest.approx((100_000 + 80_000) / 1000)
    assert whole["energy_j"] == pytest.approx(tr["energy_j"] + ev["energy_j"])
    assert whole["energy_source"] == "counter" and whole["energy_counter_resets"] == 0
    assert tr["throttled_share"] == 0.25
    assert tr["temp_max_c"] == 60 and tr["sm_clock_mean_mhz"] == 1500


def test_energy_counter_reset_is_skipped_and_flagged() -> None:
    e = [1_000, 3_000, 500, 1_500]  # driver reload between samples 1 and 2
    rows = gpu_rows(
        [
            (float(i), "train", [{"util_kernel_active_pct": 50, "energy_mj": v, "power_mw": 100_000}])
            for i, v in enumerate(e)
        ]
    )
    s = summarize(rows)
    tr = s["phases"]["train"]
    assert tr["energy_source"] == "counter"
    assert tr["energy_j"] == pytest.approx(2.0 + 1.0)
    assert tr["energy_counter_resets"] == 1


def test_energy_falls_back_to_integrated_power() -> None:
    rows = gpu_rows(
        [
            (t, "train", [{"util_kernel_active_pct": 50, "energy_mj": None, "power_mw": p}])
            for t, p in [(0.0, 100_000), (0.5, 200_000), (1.5, 200_000)]
        ]
    )
    s = summarize(rows)
    tr = s["phases"]["train"]
    assert tr["energy_source"] == "integrated_power"
    assert tr["energy_j"] == pytest.approx(150 * 0.5 + 200 * 1.0)
    assert "energy_mj" in s["unavailable_fields"]


def test_no_energy_at_all() -> None:
    rows = gpu_rows([(0.0, "train", [{"util_kernel_active_pct": 5}]), (1.0, "train", [{"util_kernel_active_pct": 1}])])
    tr = summarize(rows)["phases"]["train"]
    assert tr["energy_j"] is None and tr["energy_source"] is None
    assert tr["power_mean_w"] is None and tr["idle_share"] == 0.5


def test_metrics_flat_numeric_and_prefixed() -> None:
    rows = host_rows([(0.0, "train", 10.0, 5), (0.2, "eval/x", 20.0, 6)])
    m = metrics_from_summary(summarize(rows))
    assert m["host/train/cpu_util_mean"] == 10.0
    assert m["host/eval_x/cpu_util_p95"] == 20.0  # "/" in a phase name would add a level
    assert m["host/all/rss_peak_bytes"] == 6.0
    assert all(isinstance(v, float) for v in m.values())
    gm = metrics_from_summary(
        summarize(
            gpu_rows(
                [
                    (0.0, "train", [{"util_kernel_active_pct": 40, "power_mw": 1000}]),
                    (1.0, "train", [{"util_kernel_active_pct": 60, "power_mw": 1000}]),
                ]
            )
        )
    )
    assert gm["gpu/train/util_mean"] == 50.0 and "gpu/train/energy_source" not in gm
    assert gm["gpu/all/energy_j"] == pytest.approx(1.0)
    assert metrics_from_summary({"backend": None, "phases": {}}) == {}


def test_csv_roundtrip_dataframe_and_truncated_tail(tmp_path: Path) -> None:
    rows = host_rows([(0.0, "load", None, 10), (0.2, "train", 90.0, 20), (0.4, "train", 95.5, 30)])
    path = tmp_path / "telemetry.csv"
    sink = CsvSink(path, COMMON_COLUMNS + HOST_COLUMNS)
    sink.write(rows)
    sink.close()
    with path.open("a") as f:
        f.write("3,1000000000.6,100.6,0.6,tra")  # a SIGKILLed writer's last line
    back = read_rows(path)
    assert len(back) == 3 and back[0]["cpu_util_pct"] is None and back[2]["cpu_util_pct"] == 95.5
    expect = summarize(rows)
    assert summarize(back) == expect
    assert summarize(pd.read_csv(path, on_bad_lines="skip").iloc[:3]) == expect


def test_empty_rows() -> None:
    s = summarize([])
    assert s["sample_count"] == 0 and s["phases"]["all"]["sample_count"] == 0
    assert metrics_from_summary(s) == {}


@pytest.mark.parametrize("backend", ["nvml", "host"])
def test_plot_timeline_writes_png(tmp_path: Path, backend: str) -> None:
    if backend == "nvml":
        rows = gpu_rows(
            [
                (
                    t / 5,
                    "train" if t < 5 else "eval",
                    [
                        {
                            "util_kernel_active_pct": 10 * t,
                            "util_mem_ctrl_pct": t,
                            "mem_used_bytes": 2**30 * t,
                            "mem_total_bytes": 2**34,
                            "proc_mem_bytes": 2**29 * t,
                            "power_mw": 1000 * t,
                        }
                    ]
                    * 2,
                )
                for t in range(10)
            ]
        )
        assert set(rows[0]) - set(COMMON_COLUMNS) <= set(NVML_COLUMNS)
    else:
        rows = host_rows([(t / 5, "train" if t < 5 else "eval", 10.0 * t, 2**20 * t) for t in range(10)])
    out = plot_timeline(
        rows, tmp_path / "timeline.png", markers=[("none", 0.0), ("train", 0.05), ("eval", 1.0)], t_end_rel_s=2.0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
