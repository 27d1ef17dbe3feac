"""A stand-in ``pynvml`` module for rehearsing scripts/gpu_check.py on a machine without a GPU.

Put this folder first on PYTHONPATH: the telemetry sampler's own process imports ``pynvml`` by
name and gets one busy device. Only the subset that harness.telemetry.nvml calls is here, with
the real binding's names and signatures (tests/telemetry/test_telemetry_nvml.py checks them).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0

_UUID = "GPU-00000000-stand-in"
_POWER_MW = 250_000
_T0 = time.monotonic()


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


def nvmlInit() -> None:
    pass


def nvmlShutdown() -> None:
    pass


def nvmlSystemGetDriverVersion() -> str:
    return "0.0-stand-in"


def nvmlDeviceGetCount() -> int:
    return 1


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    if index != 0:
        raise NVMLError(2)
    return 0


def nvmlDeviceGetUUID(handle: int) -> str:
    return _UUID


def nvmlDeviceGetName(handle: int) -> str:
    return "Stand-in GPU"


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:
    return SimpleNamespace(gpu=80, memory=30)


def nvmlDeviceGetMemoryInfo(handle: int, version: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(used=2 * 2**30, total=80 * 2**30, free=78 * 2**30)


def nvmlDeviceGetComputeRunningProcesses(handle: int) -> list:
    return []


def nvmlDeviceGetPowerUsage(handle: int) -> int:
    return _POWER_MW


def nvmlDeviceGetTotalEnergyConsumption(handle: int) -> int:
    """Millijoules since an arbitrary origin, at the constant power above."""
    return int((time.monotonic() - _T0) * _POWER_MW)


def nvmlDeviceGetClockInfo(handle: int, type: int) -> int:
    return 1980


def nvmlDeviceGetTemperature(handle: int, sensor: int) -> int:
    return 40


def nvmlDeviceGetCurrentClocksEventReasons(handle: int) -> int:
    return 0
