"""NVML backend: per-device GPU counters for the devices this job can see.

The NVML module is a constructor parameter (default: ``pynvml`` from
nvidia-ml-py) so the logic is unit-tested against a stand-in. Every field group
is read independently: an unsupported field (power on some boards, energy on
old GPUs) is dropped for that device only and recorded, the rest keeps sampling.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

from .process_tree import ProcessTree
from .schema import NVML_COLUMNS

# NVML return codes (stable across versions) used when the module lacks the constant.
_NVML_ERROR_NO_PERMISSION = 4
_NVML_ERROR_NOT_SUPPORTED = 3
_NVML_ERROR_FUNCTION_NOT_FOUND = 13
# A field that fails this many samples in a row is dropped even if the error looks transient.
MAX_CONSECUTIVE_FAILURES = 5

_ENV = object()  # sentinel: read the variable from os.environ


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message is the reason recorded in the summary."""


@dataclass(frozen=True)
class DeviceRef:
    device_index: int  # CUDA ordinal inside the job (cuda:N)
    nvml_index: int | None
    uuid: str
    name: str
    entry: str  # the CUDA_VISIBLE_DEVICES entry it came from ("" when unset)
    handle: Any = field(compare=False, repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_index": self.device_index,
            "nvml_index": self.nvml_index,
            "uuid": self.uuid,
            "name": self.name,
            "entry": self.entry,
        }


@dataclass
class DeviceResolution:
    devices: list[DeviceRef]
    unsupported: list[dict[str, str]]  # {"entry", "reason"}: MIG instances, bad entries
    notes: list[str]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _const(nvml: Any, name: str, default: int) -> int:
    return int(getattr(nvml, name, default))


def resolve_visible_devices(
    nvml: Any, cuda_visible_devices: str | None, cuda_device_order: str | None = "PCI_BUS_ID"
) -> DeviceResolution:
    """Map ``CUDA_VISIBLE_DEVICES`` onto NVML devices, with CUDA's rules.

    Unset -> every device; entries are indices (NVML indices are PCI bus order,
    i.e. CUDA_DEVICE_ORDER=PCI_BUS_ID semantics), full or prefix UUIDs (``GPU-``
    optional) or MIG UUIDs. Like CUDA, the list ends at the first invalid entry.
    MIG instances are recorded as unsupported: NVML reports neither kernel
    utilization nor power per instance.
    """
    count = int(nvml.nvmlDeviceGetCount())
    uuids: dict[int, str] = {}

    def uuid_of(i: int) -> str:
        if i not in uuids:
            uuids[i] = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
        return uuids[i]

    if cuda_visible_devices is None:
        entries = [str(i) for i in range(count)]
        explicit = False
    else:
        entries = [e.strip() for e in cuda_visible_devices.split(",")] if cuda_visible_devices.strip() else []
        explicit = True

    devices: list[DeviceRef] = []
    unsupported: list[dict[str, str]] = []
    notes: list[str] = []
    seen: set[int] = set()
    for entry in entries:
        if entry.upper().startswith("MIG-"):
            unsupported.append(
                {"entry": entry, "reason": "MIG instance: per-instance utilization/power not available in NVML"}
            )
            continue
        nvml_index: int | None = None
        if re.fullmatch(r"\d+", entry):
            nvml_index = int(entry)
            if nvml_index >= count:
                unsupported.append(
                    {
                        "entry": entry,
                        "reason": f"index out of range ({count} devices); later entries ignored as CUDA does",
                    }
                )
                break
        elif re.fullmatch(r"-?\d+", entry):
            unsupported.append({"entry": entry, "reason": "negative index ends the device list (CUDA semantics)"})
            break
        else:
            prefix = entry if entry.upper().startswith("GPU-") else f"GPU-{entry}"
            matches = [i for i in range(count) if uuid_of(i).lower().startswith(prefix.lower())]
            if len(matches) != 1:
                why = "no device matches" if not matches else f"ambiguous UUID prefix ({len(matches)} devices)"
                unsupported.append({"entry": entry, "reason": f"{why}; later entries ignored as CUDA does"})
                break
            nvml_index = matches[0]
        if nvml_index in seen:
            unsupported.append({"entry": entry, "reason": "duplicate device"})
            continue
        seen.add(nvml_index)
        handle = nvml.nvmlDeviceGetHandleByIndex(nvml_index)
        try:
            name = _text(nvml.nvmlDeviceGetName(handle))
        except Exception:  # a name is decoration; never lose the device over it
            name = "unknown"
        devices.append(
            DeviceRef(len(devices), nvml_index, uuid_of(nvml_index), name, entry if explicit else "", handle)
        )

    if (
        explicit
        and count > 1
        and (cuda_device_order or "FASTEST_FIRST") != "PCI_BUS_ID"
        and any(d.entry.isdigit() for d in devices)
    ):
        notes.append(
            "CUDA_DEVICE_ORDER is not PCI_BUS_ID: numeric CUDA_VISIBLE_DEVICES entries were read as NVML "
            "(PCI bus) indices and may differ from CUDA's fastest-first order; use UUIDs or PCI_BUS_ID"
        )
    return DeviceResolution(devices, unsupported, notes)


def proc_tree_memory(procs: Iterable[Any], tree: set[int], pid_exists: Callable[[int], bool]) -> int | None:
    """Device memory used by processes in ``tree``.

    None when NVML lists processes but none of them exists in this pid namespace
    (a container without --pid=host sees host pids): 0 would be a lie then.
    """
    procs = list(procs)
    total = 0
    matched = False
    for p in procs:
        if p.pid in tree:
            matched = True
            total += int(p.usedGpuMemory or 0)
    if not matched and procs and not any(pid_exists(p.pid) for p in procs):
        return None
    return total


class NvmlBackend:
    name = "nvml"
    columns: tuple[str, ...] = NVML_COLUMNS

    def __init__(
        self,
        nvml: Any | None = None,
        *,
        root_pid: int | None = None,
        exclude_pids: Iterable[int] = (),
        cuda_visible_devices: Any = _ENV,
        cuda_device_order: Any = _ENV,
        tree_pids: Callable[[], set[int]] | None = None,
        pid_exists: Callable[[int], bool] = psutil.pid_exists,
        tree_refresh_s: float = 1.0,
    ) -> None:
        try:
            self.nvml = nvml if nvml is not None else importlib.import_module("pynvml")
        except ImportError as exc:
            raise NvmlUnavailable(f"pynvml not importable: {exc}") from exc
        try:
            self.nvml.nvmlInit()
        except Exception as exc:
            raise NvmlUnavailable(f"nvmlInit failed: {_text(exc) or type(exc).__name__}") from exc
        try:
            if cuda_visible_devices is _ENV:
                cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
            if cuda_device_order is _ENV:
                cuda_device_order = os.environ.get("CUDA_DEVICE_ORDER")
            self.resolution = resolve_visible_devices(self.nvml, cuda_visible_devices, cuda_device_order)
        except Exception as exc:
            self._shutdown()
            raise NvmlUnavailable(f"NVML device enumeration failed: {exc}") from exc
        if not self.resolution.devices:
            self._shutdown()
            reasons = "; ".join(f"{u['entry']}: {u['reason']}" for u in self.resolution.unsupported)
            raise NvmlUnavailable(
                f"no usable NVML device visible (CUDA_VISIBLE_DEVICES={cuda_visible_devices!r})"
                + (f": {reasons}" if reasons else "")
            )
        self.devices = self.resolution.devices
        if tree_pids is None:
            tree = ProcessTree(
                root_pid if root_pid is not None else os.getpid(), frozenset(exclude_pids), refresh_s=tree_refresh_s
            )
            tree_pids = tree.pids
        self._tree_pids = tree_pids
        self._tree: set[int] = set()
        self._pid_exists = pid_exists
        self.cuda_visible_devices = cuda_visible_devices
        # (device_index, group) -> reason; groups map to columns via _GROUP_COLUMNS
        self.unavailable: dict[tuple[int, str], str] = {}
        self._failures: dict[tuple[int, str], int] = {}
        self.transient_errors = 0
        self.notes: list[str] = list(self.resolution.notes)
        try:
            self.driver_version: str | None = _text(self.nvml.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver_version = None

    # -- field groups -----------------------------------------------------
    def _read_utilization(self, h: Any) -> dict[str, Any]:
        u = self.nvml.nvmlDeviceGetUtilizationRates(h)
        return {"util_kernel_active_pct": u.gpu, "util_mem_ctrl_pct": u.memory}

    def _read_memory(self, h: Any) -> dict[str, Any]:
        m = self.nvml.nvmlDeviceGetMemoryInfo(h)
        return {"mem_used_bytes": int(m.used), "mem_total_bytes": int(m.total)}

    def _read_proc_memory(self, h: Any) -> dict[str, Any]:
        procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(h)
        return {"proc_mem_bytes": proc_tree_memory(procs, self._tree, self._pid_exists)}

    def _read_power(self, h: Any) -> dict[str, Any]:
        return {"power_mw": int(self.nvml.nvmlDeviceGetPowerUsage(h))}

    def _read_energy(self, h: Any) -> dict[str, Any]:
        return {"energy_mj": int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h))}

    def _read_sm_clock(self, h: Any) -> dict[str, Any]:
        return {"sm_clock_mhz": int(self.nvml.nvmlDeviceGetClockInfo(h, _const(self.nvml, "NVML_CLOCK_SM", 1)))}

    def _read_temperature(self, h: Any) -> dict[str, Any]:
        sensor = _const(self.nvml, "NVML_TEMPERATURE_GPU", 0)
        return {
            "temp_c": int(self._first_available(("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"), h, sensor))
        }

    def _read_throttle(self, h: Any) -> dict[str, Any]:
        names = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")
        return {"throttle_reasons": int(self._first_available(names, h))}

    def _first_available(self, names: tuple[str, ...], *args: Any) -> Any:
        """Call the newest API the binding *and* the driver have (newer names replace deprecated ones)."""
        not_found = _const(self.nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", _NVML_ERROR_FUNCTION_NOT_FOUND)
        last: BaseException = AttributeError(names[-1])
        for name in names:
            fn = getattr(self.nvml, name, None)
            if fn is None:
                continue
            try:
                return fn(*args)
            except Exception as exc:  # the driver lacks this entry point: try the older one
                if getattr(exc, "value", None) != not_found:
                    raise
                last = exc
        raise last

    _GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
        "utilization": ("_read_utilization", ("util_kernel_active_pct", "util_mem_ctrl_pct")),
        "memory": ("_read_memory", ("mem_used_bytes", "mem_total_bytes")),
        "proc_memory": ("_read_proc_memory", ("proc_mem_bytes",)),
        "power": ("_read_power", ("power_mw",)),
        "energy": ("_read_energy", ("energy_mj",)),
        "sm_clock": ("_read_sm_clock", ("sm_clock_mhz",)),
        "temperature": ("_read_temperature", ("temp_c",)),
        "throttle": ("_read_throttle", ("throttle_reasons",)),
    }

    def _is_permanent(self, exc: BaseException, failures: int) -> bool:
        if isinstance(exc, (AttributeError, NotImplementedError)):
            return True  # the binding lacks the function
        permanent = {
            _const(self.nvml, "NVML_ERROR_NOT_SUPPORTED", _NVML_ERROR_NOT_SUPPORTED),
            _const(self.nvml, "NVML_ERROR_NO_PERMISSION", _NVML_ERROR_NO_PERMISSION),
            _const(self.nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", _NVML_ERROR_FUNCTION_NOT_FOUND),
        }
        return getattr(exc, "value", None) in permanent or failures >= MAX_CONSECUTIVE_FAILURES

    def sample(self) -> list[dict[str, Any]]:
        self._tree = set()
        if any((d.device_index, "proc_memory") not in self.unavailable for d in self.devices):
            self._tree = self._tree_pids()
        rows = []
        for dev in self.devices:
            row: dict[str, Any] = {
                "device_index": dev.device_index,
                "nvml_index": dev.nvml_index,
                "device_uuid": dev.uuid,
                "device_name": dev.name,
            }
            for group, (reader, _) in self._GROUPS.items():
                key = (dev.device_index, group)
                if key in self.unavailable:
                    continue
                try:
                    row.update(getattr(self, reader)(dev.handle))
                    self._failures.pop(key, None)
                except Exception as exc:
                    n = self._failures.get(key, 0) + 1
                    self._failures[key] = n
                    if self._is_permanent(exc, n):
                        self.unavailable[key] = f"{type(exc).__name__}: {_text(exc)}"
                    else:
                        self.transient_errors += 1
            rows.append(row)
        return rows

    def unavailable_fields(self) -> list[str]:
        return sorted({c for (_, g) in self.unavailable for c in self._GROUPS[g][1]})

    def meta(self) -> dict[str, Any]:
        return {
            "devices": [d.to_dict() for d in self.devices],
            "unsupported_devices": list(self.resolution.unsupported),
            "unavailable_fields": self.unavailable_fields(),
            "field_errors": {
                f"{idx}:{col}": reason
                for (idx, g), reason in sorted(self.unavailable.items())
                for col in self._GROUPS[g][1]
            },
            "transient_errors": self.transient_errors,
            "driver_version": self.driver_version,
            "cuda_visible_devices": self.cuda_visible_devices,
            "notes": list(self.notes),
        }

    def _shutdown(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass

    def close(self) -> None:
        self._shutdown()
