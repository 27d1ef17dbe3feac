"""A matrix cell: its resolved config, what its job asks for, and, in a sweep, its stage and point.

Its own module so that expansion (:mod:`harness.matrix.expand`) and sweeps
(:mod:`harness.matrix.sweep`) both use it without importing each other back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import CellConfig
from harness.matrix.schema import Resources
from harness.names import SELECT_STAGE, SELECTED_TAG, STAGE_TAG, SWEEP_TAG


def describe_point(point: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in point.items()
    )


@dataclass
class Cell:
    """One expanded cell: its resolved config, what its job asks for, and whether it is excluded."""

    config: CellConfig
    resources: Resources
    excluded: str | None = None  # the stated reason
    # successive halving (set by its Selection, no setting of the cell: the id stays): the rung its
    # next run stops at (None: the full budget), and whether a paused point continues to it
    stop_at_step: int | None = None
    continues: bool = False

    @property
    def cell_id(self) -> str:
        return self._id

    def __post_init__(self) -> None:
        self._id = self.config.cell_id  # hashing is cheap but not free; 500 cells ask often

    @property
    def folder(self) -> Path:
        return self.config.output_dir

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def stage(self) -> str | None:
        """select (a stage-1 grid point), final (stage 2 of a sweep), or None (not swept)."""
        return self.config.tags.get(STAGE_TAG)

    @property
    def point(self) -> dict[str, Any]:
        """The swept values a sweep's cell runs with: its grid point (stage 1) or the selected one (stage 2)."""
        tag = self.config.tags.get(SWEEP_TAG if self.stage == SELECT_STAGE else SELECTED_TAG)
        return json.loads(tag) if tag else {}

    def label(self) -> str:
        label = f"{self.task}/{self.model}/{self.method}/seed{self.seed}"
        return label + f" [{describe_point(self.point)}]" if self.stage == SELECT_STAGE else label
