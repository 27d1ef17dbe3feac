"""Shared test set-up: offline, CPU, a shared model cache, and a real MLflow server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on localhost, over HTTP, for the whole session."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    process = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=open(root / "server.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    import urllib.request

    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}") from None
            time.sleep(0.5)
    else:
        process.kill()
        raise RuntimeError("mlflow server did not start in 90 s")
    yield uri
    os.killpg(process.pid, 15)
    process.wait(timeout=20)


def tiny_cell_config(tmp_path: Path, model: str, method: str, task: str, **changes: Any) -> Any:
    """A few-second cell on real bundled data: small samples, short budgets, no tracking; checked
    at the edge (harness.cell.resolve) as a cell file is, so its id is the one a matrix gives it."""
    from harness.cell.resolve import parse_cell_config

    data = {
        "model": model,
        "method": method,
        "task": task,
        "output_dir": str(tmp_path / f"{model}-{method}-{task}"),
        "train": {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-2, "progress_bar": False, "log_every": 0},
        "data": {
            "max_train_samples": 8,
            "max_eval_samples": 8,
            "max_source_tokens": 64,
            "max_target_tokens": 16,
            "max_new_tokens": 8,
        },
        "tracking": {"enabled": False},
        "telemetry": {"enabled": False},
    }
    for key, value in changes.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return parse_cell_config(data, where="test cell")


@pytest.fixture
def make_cell(tmp_path: Path) -> Callable[..., Any]:
    return lambda model, method, task, **changes: tiny_cell_config(tmp_path, model, method, task, **changes)
