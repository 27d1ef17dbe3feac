"""A sweep's winner reused: stage 2's first seed evaluates the weights the stage-1 winner trained.

The stage-1 winner trained on the group's first seed with the selected values to the full budget;
stage 2's cell for that seed would train the same model again. When nothing that training reads
differs between the two configs (:meth:`harness.config.CellConfig.training_identity`: they differ
in the evaluation split, the tags, and settings such as ``data.max_eval_samples`` that only the
evaluation reads) and the method's saved weights reload exactly (its registry entry's
``reload_differs`` is empty), the stage-2 cell carries the winner's folder in its tag
``harness.reuses`` (:data:`harness.names.REUSE_TAG`) and, run, loads those weights and only
evaluates them. Its result copies the winner's training figures, records ``reused_from``, and
costs its own load and evaluation: the training is counted once, in the winner's result.

The tag is not in the cell id: the cell is the one stage 2 always made, so a finished stage-2 cell
is kept. Run, the cell checks the winner again (finished, its weights on disk, the same training
identity); when a check fails it trains as before and says why in ``result.retrained``.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.cell.plan import CellPlan
from harness.cell.resolve import parse_cell_config
from harness.cell.save import ADAPTER_DIR, MODEL_DIR
from harness.config import CellConfig
from harness.errors import ConfigError, error_line
from harness.methods.registry import resolve_method
from harness.names import CELL_CONFIG, REUSE_TAG
from harness.result import CorruptState, Result, ResultFile, ReusedFrom

log = logging.getLogger("harness.cell")

TRAIN_PHASES = ("train", "save")  # the winner's phases a reusing result shows as its own (not in its cost)


def reuse_refusal(winner: CellConfig, final: CellConfig) -> str | None:
    """Why ``final`` cannot evaluate the weights ``winner`` trained instead of training its own;
    None when it can."""
    method = resolve_method(final.method)
    if not method.trains:
        return f"{final.method} does not train"
    if method.reload_differs:
        return f"{final.method}'s saved weights may not score as the trained model: {method.reload_differs}"
    if final.data.forgetting is not None:
        return "data.forgetting scores the base model before training, which reusing a trained model skips"
    if final.train.distributed != "none":
        return f"a distributed cell (train.distributed {final.train.distributed}) trains in every process"
    differ = differences(winner.training_identity(), final.training_identity())
    if differ:
        return f"the stage-1 run trained with other settings: {', '.join(differ)}"
    return None


def differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested mappings."""
    keys = list(dict.fromkeys([*a, *b]))
    found = []
    for key in keys:
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            found += differences(left, right, f"{prefix}{key}.")
        elif left != right:
            found.append(f"{prefix}{key}")
    return found


@dataclass
class Reuse:
    """The run a cell reuses: the winner's folder and result."""

    folder: Path
    result: Result

    @property
    def weights(self) -> Path:
        return self.folder / (MODEL_DIR if (self.folder / MODEL_DIR).is_dir() else ADAPTER_DIR)


def find_reuse(plan: CellPlan, stop_at_step: int | None) -> tuple[Reuse | None, str | None]:
    """(the run this cell reuses, None) when its tag names one that still qualifies; (None, why
    not) when it names one that does not; (None, None) when the cell reuses nothing."""
    source = plan.config.tags.get(REUSE_TAG)
    if not source:
        return None, None
    folder = Path(source)
    if stop_at_step is not None:
        return None, "asked to stop at a rung: a reused run has no rungs"
    try:
        path = folder / CELL_CONFIG
        winner_config = parse_cell_config(yaml.safe_load(path.read_text()), where=str(path))
        winner = ResultFile(folder).read()
    except (OSError, ConfigError, CorruptState, yaml.YAMLError) as error:
        return None, f"the stage-1 run in {folder} cannot be read: {error_line(error)}"
    if winner is None or winner.status != "success":
        return None, f"the stage-1 run in {folder} has not succeeded ({winner.status if winner else 'no result'})"
    reason = reuse_refusal(winner_config, plan.config)
    if reason is None and not any((folder / name).is_dir() for name in (ADAPTER_DIR, MODEL_DIR)):
        reason = f"the stage-1 run in {folder} kept no weights ({ADAPTER_DIR}/ or {MODEL_DIR}/)"
    if reason is not None:
        return None, reason
    return Reuse(folder, winner), None


def adopt(reuse: Reuse, cell_dir: Path, result: Result, eval_examples: int) -> None:
    """The winner's training into this cell's result (its figures, run record, weights) and the
    record that it was reused. Its train and save phases are added once the cost is counted
    (:func:`add_trained_phases`)."""
    winner = reuse.result
    result.reused_from = ReusedFrom(
        cell_id=winner.cell_id,
        folder=str(reuse.folder),
        device_s=winner.efficiency.cost.device_s if winner.efficiency.cost else None,
    )
    if winner.run is not None:
        result.run = winner.run.model_copy(update={"eval_examples": eval_examples})
    result.efficiency = winner.efficiency.model_copy(
        deep=True, update={"phases": {}, "cost": None, "job_energy_j": None, "ranks": [], "node_telemetry": {}}
    )
    weights = reuse.weights
    _link_tree(weights, cell_dir / weights.name)
    result.artifacts[weights.name] = weights.name
    log.info(
        "reusing the run of cell %s (%s): its %s/ evaluated, not trained again",
        winner.cell_id,
        reuse.folder,
        weights.name,
    )


def add_trained_phases(result: Result) -> None:
    """The winner's train and save phases beside this cell's own (its cost, already counted, is
    this cell's load and evaluation alone)."""
    if result.reused_from is None:
        return
    try:
        winner = ResultFile(Path(result.reused_from.folder)).read()
    except CorruptState:
        return
    if winner is None:
        return
    trained = {name: stats for name, stats in winner.efficiency.phases.items() if name in TRAIN_PHASES}
    mine = result.efficiency.phases
    result.efficiency.phases = {**{k: v for k, v in mine.items() if k == "load"}, **trained, **mine}


def _link_tree(source: Path, target: Path) -> None:
    """A copy of the winner's weights in this folder (hard links where the file system allows: no
    second copy of a fine-tuned model on disk), so that the cell folder reloads on its own."""
    shutil.rmtree(target, ignore_errors=True)

    def link(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)
