"""Trainable/total parameter counts for the plan, computed offline (meta device).

Counting builds the model skeleton once per (model, method, task, method_args,
model_args); the seed and training settings do not change it, so a 500-cell matrix
asks only a few dozen times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from harness.config import CellConfig


@dataclass(frozen=True)
class ParamCount:
    trainable: int | None = None
    total: int | None = None
    error: str | None = None


class ParamCounter:
    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], ParamCount] = {}

    @staticmethod
    def key(config: CellConfig) -> tuple[str, ...]:
        dump = lambda d: json.dumps(d, sort_keys=True, default=str)  # noqa: E731
        return (config.model, config.method, config.task, dump(config.method_args), dump(config.model_args))

    def __call__(self, config: CellConfig) -> ParamCount:
        key = self.key(config)
        if key not in self._cache:
            self._cache[key] = self._count(config)
        return self._cache[key]

    @staticmethod
    def _count(config: CellConfig) -> ParamCount:
        try:
            from harness.methods import count_parameters
        except ImportError as error:
            return ParamCount(error=f"parameter counting unavailable ({error})")
        try:
            trainable, total = count_parameters(config)
        except Exception as error:  # noqa: BLE001 - shown in the plan's error column
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return ParamCount(error=f"{type(error).__name__}: {message}"[:200])
        return ParamCount(trainable=int(trainable), total=int(total))
