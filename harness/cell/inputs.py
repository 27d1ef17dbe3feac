"""result.json's ``inputs``: what a cell read, by content. The base model (its Hub revision, or
the sha256 of its files: :func:`harness.models.provenance.model_provenance`) and each data split
it read (the sha256 of a bundled or local file, or a Hub dataset's id and pinned revision)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.cell.plan import CellPlan
from harness.cell.resolve import splits_read
from harness.fingerprint import file_sha256
from harness.models.provenance import model_provenance


def cell_inputs(plan: CellPlan, model: Any) -> dict[str, Any]:
    return {"model": model_provenance(plan.model, model), "data": data_provenance(plan)}


def data_provenance(plan: CellPlan) -> dict[str, dict[str, Any]]:
    """split -> where its rows came from: ``{"file", "sha256"}`` or ``{"hub_id", "revision"}``."""
    source = plan.config.data.source
    out: dict[str, dict[str, Any]] = {}
    for split in splits_read(plan.config):
        if source is not None and source.hub_id:
            out[split] = {"hub_id": source.hub_id, "split": source.files.get(split, split), "revision": source.revision}
            continue
        path = (
            Path(source.files[split]) if source is not None and split in source.files else plan.task.bundled.get(split)
        )
        if path is None:
            continue
        try:
            out[split] = {"file": str(path), "sha256": file_sha256(path)}
        except Exception as error:  # noqa: BLE001 - provenance never fails a cell (the read itself did not)
            out[split] = {"file": str(path), "error": f"{type(error).__name__}: {error}"}
    return out
