"""Trainable/total parameter counts for the plan, computed offline (meta device).

Counting builds the model skeleton once per (model, method, task, method_args,
model_args); the seed and training settings do not change it, so a 500-cell matrix
asks only a few dozen times. Successful counts are also kept on disk
(``$HARNESS_CACHE/param-counts.json``, keyed with the transformers and peft versions):
planning the same matrix again then needs neither torch nor a model skeleton.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.config import CellConfig
from harness.jsonfile import write_json_atomic
from harness.names import cache_dir


@dataclass(frozen=True)
class ParamCount:
    trainable: int | None = None
    total: int | None = None
    error: str | None = None
    # the cell cannot run as configured (bad method_args, target modules the model lacks, ...):
    # a ConfigError from the same checks the cell runs. Other errors (a Hub config that is not
    # cached on this machine) only leave the count unknown.
    refused: bool = False


def _versions() -> str:
    found = []
    for name in ("transformers", "peft", "harness"):
        try:
            found.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name}=?")
    return ",".join(found)


def _disk_cache_path() -> Path:
    return cache_dir() / "param-counts.json"


def _read_disk_cache(path: Path) -> dict[str, list[int]]:
    """The cached counts, keeping only well-formed entries: the cache is only a speed-up, so a file
    that is not what this module wrote (a list, counts that are not two integers) costs a recount."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: value
        for key, value in data.items()
        if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
    }


class ParamCounter:
    def __init__(self, persistent: bool = True) -> None:
        self._cache: dict[tuple[str, ...], ParamCount] = {}
        self._path = _disk_cache_path() if persistent else None
        self._versions = _versions()
        self._disk: dict[str, list[int]] = {}
        if self._path is not None and self._path.is_file():
            self._disk = _read_disk_cache(self._path)

    @staticmethod
    def key(config: CellConfig) -> tuple[str, ...]:
        dump = lambda d: json.dumps(d, sort_keys=True, default=str)  # noqa: E731
        # gradient checkpointing can make a combination refused (prompt methods), so it is part of the key
        key = (
            config.model,
            config.method,
            config.task,
            dump(config.method_args),
            dump(config.model_args),
            str(config.train.gradient_checkpointing),
        )
        # a defined task's labels size the head (appended only then: bundled tasks keep their keys)
        definition = config.task_definition  # the normalised dump (harness.cell.resolve)
        return key + (dump(definition),) if definition else key

    def __call__(self, config: CellConfig) -> ParamCount:
        key = self.key(config)
        if key not in self._cache:
            disk_key = json.dumps([self._versions, *key])
            if disk_key in self._disk:
                trainable, total = self._disk[disk_key]
                self._cache[key] = ParamCount(trainable=trainable, total=total)
            else:
                self._cache[key] = self._count(config)
                if self._cache[key].error is None:
                    self._remember(disk_key, self._cache[key])
        return self._cache[key]

    def _remember(self, disk_key: str, count: ParamCount) -> None:
        if self._path is None:
            return
        self._disk[disk_key] = [count.trainable, count.total]  # type: ignore[list-item]
        try:
            write_json_atomic(self._path, self._disk)
        except OSError:  # a read-only or full cache only costs speed (the temp file is removed)
            pass

    @staticmethod
    def _count(config: CellConfig) -> ParamCount:
        try:
            from harness.methods import count_parameters
        except ImportError as error:
            return ParamCount(error=f"parameter counting unavailable ({error})")
        from harness.errors import ConfigError

        try:
            trainable, total = count_parameters(config)
        except ConfigError as error:
            return ParamCount(error=str(error), refused=True)
        except Exception as error:  # noqa: BLE001 - shown in the plan's error column
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return ParamCount(error=f"{type(error).__name__}: {message}")
        return ParamCount(trainable=int(trainable), total=int(total))
