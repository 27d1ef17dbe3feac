"""A cell's plan: every name resolved and every input checked, nothing loaded (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.cell.resolve import resolve_cell_config
from harness.config import CellConfig
from harness.heads import HeadName
from harness.methods.build import CountUnavailable, check_combination, count_parameters, resolve_method_args
from harness.methods.registry import MethodSpec, resolve_method
from harness.models import ModelSpec, resolve_model
from harness.tasks import TaskSpec, head_for, load_split, task_of


@dataclass
class CellPlan:
    """A cell with every name resolved and every input checked; nothing loaded yet."""

    config: CellConfig
    model: ModelSpec
    task: TaskSpec
    method: MethodSpec
    head: HeadName
    method_args: dict[str, Any]
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    validation_rows: list[dict[str, Any]]  # train.eval_every's loss, while training


def prepare_cell(config: CellConfig) -> CellPlan:
    """Resolve and check a cell. Raises ConfigError with a one-line reason.

    The config goes through :func:`harness.cell.resolve.resolve_cell_config` once more (it changes
    nothing on a config that has been through it): a ``CellConfig`` built in code (bench/,
    scripts/, tests) gets the names checked and a bundled task's held-out split recorded, so its
    cell id is the one a matrix or cell file gives the same settings."""
    config = resolve_cell_config(config)
    model = resolve_model(config.model)
    task = task_of(config)
    method = resolve_method(config.method)
    head = head_for(task, model.family, config.model)
    args = resolve_method_args(method, model.family, config.method_args)
    check_combination(config, method, model.family, head, args)
    if method.peft_type is not None:
        try:  # the method on the model's skeleton: target modules it lacks are refused here
            count_parameters(config)
        except CountUnavailable:
            pass  # built from the base weights: checked when the model is loaded
    data = config.data
    train_rows = load_split(task, data, data.train_split, data.max_train_samples, config.seed) if method.trains else []
    eval_rows = load_split(task, data, data.eval_split, data.max_eval_samples, config.seed)
    watched = method.trains and config.train.eval_every > 0
    validation_rows = (
        load_split(task, data, data.validation_split, data.max_validation_samples, config.seed) if watched else []
    )
    return CellPlan(config, model, task, method, head, args, train_rows, eval_rows, validation_rows)
