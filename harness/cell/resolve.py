"""The edge where a cell config meets the registries: what :mod:`harness.config` (the bottom
layer, which imports no registry) cannot check on its own.

- ``method_args: {from: adapter_config.json}`` is read into the method's arguments, so the cell
  id follows the file's content;
- the method and the task must be known (a bundled task, or one the matrix defines with data);
  a defined task's ``task_definition`` is checked against the task kinds and normalised;
- a task that carves its selection split out of the training data (BillSum's validation, or
  a defined task's ``validation: {from: train, ...}``) has that recorded in ``data.held_out``, which enters the cell id;
- ``data.forgetting.sample`` must name a sample that can be read (harness.tasks.forgetting).

Every path from user input to a ``CellConfig`` goes through :func:`parse_cell_config`: the CLI's
cell files and flags, matrix expansion, and the job that re-reads its config. Plain data: no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config import CellConfig, DataSource, format_validation_error, read_yaml_mapping
from harness.errors import ConfigError, clip
from harness.heads import HEADS
from harness.methods.registry import read_adapter_config, resolve_method
from harness.models.registry import has_chat_template, resolve_model
from harness.tasks.forgetting import check_sample
from harness.tasks.registry import check_defined_task, head_for, parse_task_definition, resolve_task


def parse_cell_config(data: dict[str, Any], where: str = "cell config") -> CellConfig:
    """A checked ``CellConfig`` from its mapping, or a one-line ``ConfigError`` naming the problem."""
    data = _read_adapter_file(data)
    try:
        config = CellConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, CellConfig, where)) from None
    return resolve_cell_config(config, where)


def resolve_cell_config(config: CellConfig, where: str = "cell config") -> CellConfig:
    """Check the names against the registries and record what the task's entry adds to the id."""
    try:
        resolve_method(config.method)
        if config.task_definition is None:
            resolve_task(config.task)
        else:
            check_defined_task(config.task, config.data.source)
        if config.data.forgetting is not None:
            check_sample(config.data.forgetting)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    if config.task_definition is not None:  # checked against the task kinds, kept as the model's dump (the id's form)
        definition = parse_task_definition(config.task_definition, where).dump()
        if definition != config.task_definition:
            config = config.model_copy(update={"task_definition": definition})
    config = _resolve_prompt_template(config, where)
    held_out = resolve_task(config.task, config.task_definition).held_out
    source = config.data.source
    if held_out is not None and source is not None and held_out.name in source.files:
        raise ConfigError(
            f"{where}: task {config.task!r} has a {held_out.name} file and declares a held-out "
            f"{held_out.name} slice of {held_out.of}; keep one (remove validation: from the task, or the file)"
        )
    recorded = held_out.describe() if held_out is not None else None
    if config.data.held_out not in (None, recorded):
        raise ConfigError(
            f"{where}: data.held_out {config.data.held_out!r}: it is recorded from the task, not set by "
            f"hand (task {config.task!r}: {recorded or 'no held-out split'}); remove it"
        )
    if config.data.held_out != recorded:
        config = config.model_copy(update={"data": config.data.model_copy(update={"held_out": recorded})})
    return _record_data_hashes(config, where)


def splits_read(config: CellConfig) -> list[str]:
    """The splits a cell reads, as stored: its training split when its method trains, the
    evaluation split, the validation split when it is scored while training (``train.eval_every``);
    a held-out split is read from the split it is carved from."""
    data, trains = config.data, resolve_method(config.method).trains
    splits = [data.train_split] if trains else []
    splits += [data.eval_split] + ([data.validation_split] if trains and config.train.eval_every else [])
    held_out = resolve_task(config.task, config.task_definition).held_out
    read = [held_out.of if held_out is not None and s in (held_out.name, held_out.of) else s for s in splits]
    return list(dict.fromkeys(read))


def files_read(config: CellConfig) -> dict[str, str]:
    """split -> the local file a cell reads for it (none for bundled or Hub data)."""
    source = config.data.source
    if source is None or source.hub_id or not source.files:
        return {}
    return {split: source.files[split] for split in splits_read(config) if split in source.files}


def _record_data_hashes(config: CellConfig, where: str) -> CellConfig:
    """Record the sha256 of every local data file the cell reads in ``data.source.sha256`` (and
    its ``data.train_source``'s in that source's ``sha256``), so in its id: an edited file makes new
    cells, and result.json keeps what was read. A hash already there (the job re-reading its planned
    config, or a user's pin) must match the file: a file that changed since is refused rather than
    silently scored."""
    data = config.data
    update: dict[str, Any] = {}
    source = _hashed(data.source, files_read(config), where)
    if source is not data.source:
        update["source"] = source
    train = data.train_source
    if train is not None and not train.hub_id and train.files and resolve_method(config.method).trains:
        if data.train_split not in train.files:
            raise ConfigError(
                f"{where}: data.train_source has no file for split {data.train_split!r}; given: {', '.join(train.files)}"
            )
        hashed = _hashed(train, {data.train_split: train.files[data.train_split]}, where)
        if hashed is not train:
            update["train_source"] = hashed
    return config.model_copy(update={"data": data.model_copy(update=update)}) if update else config


def _hashed(source: DataSource | None, files: dict[str, str], where: str) -> DataSource | None:
    """``source`` with the sha256 of these files (split -> path) recorded; itself when they are."""
    if not files or source is None:
        return source
    from harness.tasks.data import file_sha256

    pinned = source.sha256 or {}
    hashes = {}
    for split, name in files.items():
        if not Path(name).is_file():
            continue  # not hashed: refused by the plan's reading of the cell's data, naming the cell
        digest = file_sha256(Path(name))
        if split in pinned and pinned[split] != digest:
            raise ConfigError(
                f"{where}: data file {name} ({split}) changed since its cell was planned: sha256 "
                f"{pinned[split][:12]}… then, {digest[:12]}… now; plan the matrix again (its cells are new cells)"
            )
        hashes[split] = digest
    if hashes == pinned:
        return source
    return source.model_copy(update={"sha256": dict(sorted(hashes.items()))})


def load_cell_config(path: Path, overrides: dict[str, Any] | None = None) -> CellConfig:
    """Read a cell YAML/JSON file, apply CLI overrides (dotted keys), validate."""
    from harness.dotted import DottedConflict, set_dotted

    data = read_yaml_mapping(path, what="config file")
    for dotted, value in (overrides or {}).items():
        try:
            set_dotted(data, dotted, value)
        except DottedConflict as conflict:
            raise ConfigError(
                f"{path}: --set {clip(conflict.dotted)}: {clip(conflict.prefix)} is a value in this file, not a mapping"
            ) from None
    return parse_cell_config(data, where=str(path))


def _read_adapter_file(data: Any) -> Any:
    """``method_args: {from: adapter_config.json}``: the file's fields, then the other keys."""
    if isinstance(data, dict) and isinstance(data.get("method_args"), dict) and "from" in data["method_args"]:
        args = dict(data["method_args"])
        data = {**data, "method_args": {**read_adapter_config(args.pop("from"), str(data.get("method"))), **args}}
    return data


def _resolve_prompt_template(config: CellConfig, where: str) -> CellConfig:
    """``data.prompt_template`` as the cell uses it, plain or chat (so in its id): auto is chat for
    an instruct/chat model whose tokenizer has a chat template; a head that builds no prompt from a
    template (classification, encoder-decoder) uses none, recorded as plain. chat where the
    tokenizer is known to have no template is refused; a Hub model's is checked when it loads."""
    requested = config.data.prompt_template
    try:
        model = resolve_model(config.model)
        head = head_for(resolve_task(config.task, config.task_definition), model.family, config.model)
    except ConfigError:
        return config  # refused where the model and task are checked (harness.cell.plan)
    template = has_chat_template(model)
    if not HEADS[head].continues_prompt:
        resolved = "plain"
    elif requested == "chat" and template is False:
        raise ConfigError(
            f"{where}: data.prompt_template: chat: model {config.model!r} has no chat template in its "
            "tokenizer; valid: plain, auto"
        )
    elif requested == "auto":
        resolved = "chat" if model.chat and template is not False else "plain"
    else:
        resolved = requested
    if resolved == requested:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"prompt_template": resolved})})
