"""NVML backend logic against a stand-in NVML module (no GPU here, ever)."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.telemetry import NvmlBackend, NvmlUnavailable, proc_tree_memory, resolve_visible_devices, summarize
from harness.telemetry import nvml as nvml_module
from harness.telemetry.child import ChildConfig, open_backend
from harness.telemetry.host import HostBackend
from harness.telemetry.nvml import MAX_CONSECUTIVE_FAILURES

ROOT = Path(__file__).resolve().parents[2]

NOT_SUPPORTED, NO_PERMISSION, FUNCTION_NOT_FOUND, UNKNOWN = 3, 4, 13, 999


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {NOT_SUPPORTED: "Not Supported", FUNCTION_NOT_FOUND: "Function Not Found"}.get(
            self.value, f"Error {self.value}"
        )


@dataclass
class FakeDevice:
    uuid: str
    name: str = "NVIDIA Fake 80GB"
    util: int = 50
    mem_util: int = 20
    used: int = 10 * 2**30
    total: int = 80 * 2**30
    power_mw: int = 300_000
    energy: list[int] = field(default_factory=lambda: [1_000_000])  # successive counter readings
    procs: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, usedGpuMemory)
    fail: dict[str, list[int]] = field(default_factory=dict)  # function -> error codes to raise, in turn (0 = succeed)
    _energy_i: int = 0


class FakeNvml:
    """The subset of pynvml the backend uses; devices are listed in PCI bus order."""

    NVMLError = FakeNVMLError
    NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NO_PERMISSION
    NVML_ERROR_FUNCTION_NOT_FOUND = FUNCTION_NOT_FOUND
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: list[FakeDevice], init_error: int | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.shutdown_calls = 0

    def _check(self, fn: str, h: FakeDevice) -> None:
        codes = h.fail.get(fn)
        if codes:
            code = codes.pop(0) if len(codes) > 1 else codes[0]
            if code:
                raise FakeNVMLError(code)

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "999.1"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeDevice:
        return self.devices[i]

    def nvmlDeviceGetUUID(self, h: FakeDevice) -> bytes:
        return h.uuid.encode()  # old bindings return bytes

    def nvmlDeviceGetName(self, h: FakeDevice) -> str:
        return h.name

    def nvmlDeviceGetUtilizationRates(self, h: FakeDevice) -> Any:
        self._check("util", h)
        return SimpleNamespace(gpu=h.util, memory=h.mem_util)

    def nvmlDeviceGetMemoryInfo(self, h: FakeDevice) -> Any:
        self._check("memory", h)
        return SimpleNamespace(used=h.used, total=h.total, free=h.total - h.used)

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeDevice) -> list[Any]:
        self._check("procs", h)
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in h.procs]

    def nvmlDeviceGetPowerUsage(self, h: FakeDevice) -> int:
        self._check("power", h)
        return h.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeDevice) -> int:
        self._check("energy", h)
        v = h.energy[min(h._energy_i, len(h.energy) - 1)]
        h._energy_i += 1
        return v

    def nvmlDeviceGetClockInfo(self, h: FakeDevice, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return 1410

    def nvmlDeviceGetTemperature(self, h: FakeDevice, sensor: int) -> int:
        self._check("temp", h)
        return 55

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeDevice) -> int:
        self._check("events", h)
        return 0x1


class OldFakeNvml(FakeNvml):
    """An older binding: only the deprecated throttle API, no energy counter at all."""

    nvmlDeviceGetCurrentClocksEventReasons = None  # type: ignore[assignment]

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeDevice) -> int:
        return 0x4

    def __getattribute__(self, name: str) -> Any:
        if name == "nvmlDeviceGetTotalEnergyConsumption":
            raise AttributeError(name)
        return super().__getattribute__(name)


UUIDS = ["GPU-aaaa1111-0000", "GPU-bbbb2222-0000", "GPU-bbbb3333-0000"]


def make(n: int = 3, **kw: Any) -> FakeNvml:
    return FakeNvml([FakeDevice(u, **kw) for u in UUIDS[:n]])


def backend(nvml: FakeNvml, visible: str | None = None, tree: set[int] | None = None, **kw: Any) -> NvmlBackend:
    return NvmlBackend(
        nvml, cuda_visible_devices=visible, cuda_device_order="PCI_BUS_ID", tree_pids=lambda: set(tree or {1}), **kw
    )


def sample(b: NvmlBackend, n: int, phase: str = "train", dt: float = 0.5) -> list[dict]:
    """What the sampler child does: stamp each backend reading."""
    rows = []
    for seq in range(n):
        for r in b.sample():
            rows.append(
                {**r, "seq": seq, "t_rel_s": seq * dt, "t_wall": 1e9 + seq * dt, "t_mono": seq * dt, "phase": phase}
            )
    return rows


# -- device mapping ------------------------------------------------------------------
def test_unset_cuda_visible_devices_means_all_devices() -> None:
    res = resolve_visible_devices(make(), None)
    assert [(d.device_index, d.nvml_index, d.uuid) for d in res.devices] == [
        (0, 0, UUIDS[0]),
        (1, 1, UUIDS[1]),
        (2, 2, UUIDS[2]),
    ]
    assert res.unsupported == [] and res.notes == []


@pytest.mark.parametrize(
    ("visible", "expect"),
    [
        ("2,0", [2, 0]),  # indices are NVML (PCI bus) indices; order defines cuda:N
        (" 1 ", [1]),
        ("GPU-bbbb3333-0000", [2]),  # full UUID
        ("GPU-aaaa,GPU-bbbb2", [0, 1]),  # unique prefixes
        ("bbbb3", [2]),  # prefix without "GPU-"
        ("gpu-AAAA1111", [0]),  # case-insensitive
        ("", []),  # empty: no device, as CUDA
    ],
)
def test_device_mapping(visible: str, expect: list[int]) -> None:
    res = resolve_visible_devices(make(), visible)
    assert [d.nvml_index for d in res.devices] == expect
    assert [d.device_index for d in res.devices] == list(range(len(expect)))
    assert all(d.name == "NVIDIA Fake 80GB" for d in res.devices)


@pytest.mark.parametrize(
    ("visible", "expect", "bad"),
    [("0,7,1", [0], "7"), ("1,-1,0", [1], "-1"), ("GPU-bbbb,0", [], "GPU-bbbb"), ("GPU-zzzz,0", [], "GPU-zzzz")],
)
def test_invalid_entry_ends_the_list_like_cuda(visible: str, expect: list[int], bad: str) -> None:
    res = resolve_visible_devices(make(), visible)
    assert [d.nvml_index for d in res.devices] == expect
    assert res.unsupported[-1]["entry"] == bad


def test_mig_entries_recorded_unsupported_and_duplicates_skipped() -> None:
    res = resolve_visible_devices(make(), "MIG-1234-abcd,1,GPU-bbbb2222,MIG-GPU-aaaa1111/1/0")
    assert [d.nvml_index for d in res.devices] == [1]
    assert [u["entry"] for u in res.unsupported] == ["MIG-1234-abcd", "GPU-bbbb2222", "MIG-GPU-aaaa1111/1/0"]
    assert "MIG" in res.unsupported[0]["reason"] and res.unsupported[1]["reason"] == "duplicate device"
    with pytest.raises(NvmlUnavailable, match="no usable NVML device"):
        backend(make(), "MIG-1234-abcd")


def test_device_order_note_when_not_pci_bus_id() -> None:
    res = resolve_visible_devices(make(), "1,0", cuda_device_order=None)
    assert res.notes and "PCI_BUS_ID" in res.notes[0]
    assert resolve_visible_devices(make(), "GPU-aaaa", cuda_device_order=None).notes == []


# -- backend lifecycle --------------------------------------------------------------
def test_init_failure_and_no_device_raise_unavailable_and_shut_down() -> None:
    with pytest.raises(NvmlUnavailable, match="nvmlInit failed"):
        NvmlBackend(FakeNvml([], init_error=9))
    nvml = make()
    with pytest.raises(NvmlUnavailable, match="CUDA_VISIBLE_DEVICES=''"):
        backend(nvml, "")
    assert nvml.shutdown_calls == 1


def test_open_backend_auto_falls_back_to_host_and_nvml_does_not(tmp_path: Any) -> None:
    cfg = ChildConfig(
        out_dir=str(tmp_path),
        interval_s=0.2,
        backend="auto",
        root_pid=os.getpid(),
        parent_pid=os.getppid(),
        exclude_pids=(),
        t0_mono=0.0,
    )
    b, reason = open_backend(cfg, FakeNvml([], init_error=12))
    assert isinstance(b, HostBackend) and "nvmlInit failed" in (reason or "")
    b, reason = open_backend(cfg, make())
    assert isinstance(b, NvmlBackend) and reason is None
    b.close()
    with pytest.raises(NvmlUnavailable):
        open_backend(ChildConfig(**{**cfg.__dict__, "backend": "nvml"}), FakeNvml([], init_error=12))


def test_full_sample_row() -> None:
    b = backend(make(1), "0")
    (row,) = b.sample()
    assert row == {
        "device_index": 0,
        "nvml_index": 0,
        "device_uuid": UUIDS[0],
        "device_name": "NVIDIA Fake 80GB",
        "util_kernel_active_pct": 50,
        "util_mem_ctrl_pct": 20,
        "mem_used_bytes": 10 * 2**30,
        "mem_total_bytes": 80 * 2**30,
        "proc_mem_bytes": 0,
        "power_mw": 300_000,
        "energy_mj": 1_000_000,
        "sm_clock_mhz": 1410,
        "temp_c": 55,
        "throttle_reasons": 1,
    }
    assert b.meta()["unavailable_fields"] == [] and b.meta()["driver_version"] == "999.1"
    b.close()


# -- per-field failure ----------------------------------------------------------------
def test_unsupported_field_drops_only_that_field_on_that_device() -> None:
    nvml = make(2)
    nvml.devices[0].fail["power"] = [NOT_SUPPORTED]
    b = backend(nvml, "0,1")
    rows = sample(b, 3)
    dev0 = [r for r in rows if r["device_index"] == 0]
    dev1 = [r for r in rows if r["device_index"] == 1]
    assert all("power_mw" not in r for r in dev0) and all(r["power_mw"] == 300_000 for r in dev1)
    assert all(r["util_kernel_active_pct"] == 50 and r["energy_mj"] for r in dev0)
    meta = b.meta()
    assert meta["unavailable_fields"] == ["power_mw"]
    assert meta["field_errors"] == {"0:power_mw": "FakeNVMLError: Not Supported"}
    # the unsupported call is not retried every tick
    nvml.devices[0].fail["power"] = [0]
    assert "power_mw" not in b.sample()[0]


def test_transient_error_skips_a_sample_then_persistent_error_drops() -> None:
    nvml = make(1)
    nvml.devices[0].fail["temp"] = [UNKNOWN, UNKNOWN, 0]
    b = backend(nvml, "0")
    temps = [r.get("temp_c") for r in sample(b, 4)]
    assert temps == [None, None, 55, 55]
    assert b.meta()["unavailable_fields"] == [] and b.meta()["transient_errors"] == 2
    nvml.devices[0].fail["util"] = [UNKNOWN]
    rows = sample(b, MAX_CONSECUTIVE_FAILURES + 2)
    assert all("util_kernel_active_pct" not in r for r in rows)
    assert b.meta()["unavailable_fields"] == ["util_kernel_active_pct", "util_mem_ctrl_pct"]


def test_missing_binding_function_and_old_throttle_api() -> None:
    nvml = OldFakeNvml([FakeDevice(UUIDS[0])])
    b = backend(nvml, "0")
    rows = sample(b, 3)
    assert all(r["throttle_reasons"] == 0x4 for r in rows)  # deprecated name used
    assert all("energy_mj" not in r for r in rows)
    assert b.meta()["unavailable_fields"] == ["energy_mj"]
    s = summarize(rows, meta=b.meta())
    assert s["phases"]["train"]["energy_source"] == "integrated_power"
    assert s["phases"]["train"]["energy_j"] == pytest.approx(300 * 1.0)  # 300 W over 2 intervals of 0.5 s
    assert s["unavailable_fields"] == ["energy_mj"]


# -- energy across a counter wrap ---------------------------------------------------
def test_energy_counter_reset_through_backend_and_summary() -> None:
    nvml = make(1, energy=[5_000, 9_000, 2**64 - 1000, 3_000, 4_000])  # wraps / resets after the 3rd reading
    rows = sample(backend(nvml, "0"), 5)
    s = summarize(rows)
    tr = s["phases"]["train"]
    assert tr["energy_source"] == "counter"
    assert tr["energy_j"] == pytest.approx((4_000 + (2**64 - 1000 - 9_000) + 1_000) / 1000)
    assert tr["energy_counter_resets"] == 1


def test_energy_split_across_phases() -> None:
    nvml = make(1, energy=[0, 1_000, 3_000, 6_000])
    b = backend(nvml, "0")
    rows = sample(b, 2, phase="train") + [
        {**r, "seq": r["seq"] + 2, "t_rel_s": r["t_rel_s"] + 1.0} for r in sample(b, 2, phase="eval")
    ]
    s = summarize(rows)
    assert s["phases"]["train"]["energy_j"] == pytest.approx(1.0)
    assert s["phases"]["eval"]["energy_j"] == pytest.approx(2.0 + 3.0)  # the boundary interval ends in eval
    assert s["phases"]["all"]["energy_j"] == pytest.approx(6.0)


# -- process tree filtering ---------------------------------------------------------
def test_proc_memory_counts_only_the_job_tree() -> None:
    me = os.getpid()
    nvml = make(2)
    nvml.devices[0].procs = [(me, 3 * 2**30), (me + 1, 2**30), (424242, 7 * 2**30), (me + 2, None)]
    nvml.devices[1].procs = [(424242, 5 * 2**30)]
    b = backend(nvml, "0,1", tree={me, me + 1, me + 2}, pid_exists=lambda pid: pid != 99999)
    r0, r1 = b.sample()
    assert r0["proc_mem_bytes"] == 4 * 2**30  # usedGpuMemory None (not available) counts as 0
    assert r1["proc_mem_bytes"] == 0  # other job's process, visible in our namespace


def test_proc_memory_unknown_when_pids_are_from_another_namespace() -> None:
    procs = [SimpleNamespace(pid=99999, usedGpuMemory=2**30)]
    assert proc_tree_memory(procs, {1, 2}, pid_exists=lambda pid: False) is None
    assert proc_tree_memory(procs, {1, 2}, pid_exists=lambda pid: True) == 0
    assert proc_tree_memory([], {1}, pid_exists=lambda pid: False) == 0


def test_default_tree_is_the_real_process_tree(tmp_path: Any) -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        nvml = make(1)
        nvml.devices[0].procs = [(child.pid, 2**20), (os.getpid(), 2**21), (os.getppid(), 2**22)]
        b = NvmlBackend(nvml, root_pid=os.getpid(), cuda_visible_devices="0", exclude_pids={child.pid + 10**6})
        assert b.sample()[0]["proc_mem_bytes"] == 2**20 + 2**21  # our parent is not part of the job
        b2 = NvmlBackend(nvml, root_pid=os.getpid(), cuda_visible_devices="0", exclude_pids={child.pid})
        assert b2.sample()[0]["proc_mem_bytes"] == 2**21  # e.g. the sampler process itself
    finally:
        child.kill()
        child.wait()


def test_new_api_missing_in_driver_falls_back_to_deprecated_name() -> None:
    class DriverTooOld(FakeNvml):
        def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeDevice) -> int:
            return 0x40

        def nvmlDeviceGetTemperatureV(self, h: FakeDevice, sensor: int) -> int:
            raise FakeNVMLError(FUNCTION_NOT_FOUND)

    nvml = DriverTooOld([FakeDevice(UUIDS[0], fail={"events": [FUNCTION_NOT_FOUND]})])
    rows = sample(backend(nvml, "0"), 2)
    assert [r["throttle_reasons"] for r in rows] == [0x40, 0x40]
    assert [r["temp_c"] for r in rows] == [55, 55]
    assert summarize(rows)["phases"]["train"]["throttled_share"] == 1.0  # HW thermal slowdown


def test_child_loop_writes_nvml_rows(tmp_path: Any) -> None:
    """The sampling loop (in-process, no spawn) with the stand-in NVML: CSV, phases, metrics."""
    import multiprocessing
    import threading
    import time

    from harness.telemetry import metrics_from_summary, read_rows
    from harness.telemetry.child import SharedPhase, _loop
    from harness.telemetry.schema import COMMON_COLUMNS, CsvSink

    ctx = multiprocessing.get_context("spawn")
    phase = SharedPhase(ctx, "load")
    ours, theirs = ctx.Pipe(duplex=True)
    nvml = make(2, energy=[1_000 * i for i in range(1, 1000)])
    nvml.devices[1].fail["power"] = [NOT_SUPPORTED]
    b = backend(nvml, "1,0")
    cfg = ChildConfig(
        out_dir=str(tmp_path),
        interval_s=0.02,
        backend="nvml",
        root_pid=os.getpid(),
        parent_pid=os.getppid(),
        exclude_pids=(),
        t0_mono=time.monotonic(),
        flush_interval_s=0.05,
    )
    sink = CsvSink(tmp_path / "telemetry.csv", COMMON_COLUMNS + b.columns)
    meta: dict[str, Any] = {}

    def drive() -> None:
        time.sleep(0.15)
        phase.set("train")
        time.sleep(0.15)
        ours.send("stop")

    t = threading.Thread(target=drive)
    t.start()
    assert _loop(cfg, phase, theirs, b, sink, meta, tmp_path / "meta.json") == "stopped"
    t.join()
    sink.close()
    rows = read_rows(tmp_path / "telemetry.csv")
    assert {r["nvml_index"] for r in rows} == {0, 1} and {r["device_index"] for r in rows} == {0, 1}
    assert [r["phase"] for r in rows][:2] == ["load", "load"] and rows[-1]["phase"] == "train"
    assert all((r["power_mw"] is None) == (r["nvml_index"] == 1) for r in rows)
    s = summarize(rows, meta=b.meta())
    assert s["unavailable_fields"] == ["power_mw"] and s["field_errors"] == {
        "0:power_mw": "FakeNVMLError: Not Supported"
    }  # keyed by cuda:N
    m = metrics_from_summary(s)
    assert m["gpu/train/util_mean"] == 50.0 and m["gpu/all/energy_j"] > 0 and m["gpu/train/power_peak_w"] == 300.0
    assert m["gpu/load/mem_used_peak_bytes"] == 2 * 10 * 2**30


# -- the stand-ins against the real binding ----------------------------------------------
def _required_positional(fn: Any) -> int:
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    return sum(1 for p in params if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD)


def test_backend_calls_only_what_nvidia_ml_py_has() -> None:
    """Every NVML function and constant the backend names exists in the real binding: the GPU path
    is run here only against stand-ins, so a misspelt name would otherwise surface on a GPU."""
    import pynvml

    source = (Path(nvml_module.__file__)).read_text()
    names = set(re.findall(r"\b(nvml[A-Z]\w+|NVML_[A-Z_]+)\b", source)) - set(
        vars(nvml_module)
    )  # less our NVML_COLUMNS
    assert {"nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTemperatureV", "NVML_CLOCK_SM"} <= names
    assert sorted(n for n in names if not hasattr(pynvml, n)) == []


def test_stand_ins_match_the_real_binding() -> None:
    """FakeNvml here and the module that rehearses gpu_check.py take the real functions' arguments
    and use the real error codes and constants."""
    import pynvml

    spec = importlib.util.spec_from_file_location("stand_in_pynvml", ROOT / "tests/scripts/stand_in_nvml/pynvml.py")
    assert spec and spec.loader
    stand_in = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stand_in)
    for fake in (FakeNvml([]), OldFakeNvml([]), stand_in):
        members = [n for n in dir(fake) if n.startswith(("nvml", "NVML_"))]
        assert members
        for name in members:
            ours, real = getattr(fake, name, None), getattr(pynvml, name)
            if name.startswith("NVML_"):
                assert ours == real, name
            elif ours is not None:
                assert _required_positional(ours) == _required_positional(real), name
