"""Log one cell's result to MLflow: params, tags, metrics, artifacts.

Fails open: the caller records a failure in ``result.json``; training results are
never lost because a tracking server is down. Runs are found again by their
``harness.cell_id`` tag, so logging the same cell twice updates one run.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.dotted import flatten
from harness.names import CELL_TAG, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND, PARENT_TAG, default_tracking_uri  # noqa: F401 - re-exported
from harness.result import Result, write_result

# An unreachable server must fail in seconds, not after MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

MAX_PARAM_LENGTH = 6000
# params under this prefix hold the result's run record (what ran: resolved peft config, learning
# rate), beside the cell config's, so a reader without result.json still has it (harness.report)
RUN_PARAMS = "run"


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: next to a SQLite store's database (MLflow
    would use ./mlruns of whatever folder the command runs in); the server's choice otherwise."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").absolute().as_uri()
    return None


def create_experiment(client: Any, name: str, uri: str) -> str:
    """Create the experiment, or find it when another process created it first."""
    try:
        # a model-training experiment: the UI opens on its runs, not on the GenAI overview
        return client.create_experiment(
            name, artifact_location=artifact_location(uri), tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
        )
    except Exception:  # noqa: BLE001 - RESOURCE_ALREADY_EXISTS from a concurrent creator
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def result_metrics(result: Result) -> dict[str, float]:
    """Every number of a result that belongs in MLflow's metric table. A sweep's grid point
    (stage 1) was scored on its selection split: its quality figures are logged as
    ``<split>/<metric>`` (``validation/f1_macro``), so no MLflow column mixes them with test scores."""
    from harness.names import SELECT_STAGE, STAGE_TAG

    selection = (result.config.get("tags") or {}).get(STAGE_TAG) == SELECT_STAGE
    prefix = f"{(result.config.get('data') or {}).get('eval_split', 'validation')}/" if selection else ""
    metrics = {f"{prefix}{k}": float(v) for k, v in result.metrics.items()}
    eff = result.efficiency
    for key in (
        "trainable_params",
        "total_params",
        "trainable_share",
        "train_steps",
        "train_samples",
        "train_samples_per_s",
        "train_tokens_per_s",
        "padding_fraction",
        "adapter_bytes",
        "final_train_loss",
        "model_flops_per_token",
        "mfu",
        "compile_s",
    ):
        value = getattr(eff, key)
        if value is not None:
            metrics[f"eff/{key}"] = float(value)
    for phase, stats in eff.phases.items():
        for key, value in stats.model_dump().items():
            if isinstance(value, (int, float)) and value is not None:
                metrics[f"eff/{phase}/{key}"] = float(value)
    for key, value in (result.telemetry.get("metrics") or {}).items():
        if isinstance(value, (int, float)):
            metrics[key] = float(value)
    return metrics


def result_tags(result: Result) -> dict[str, str]:
    tags = {
        CELL_TAG: result.cell_id,
        "model": result.model,
        "method": result.method,
        "task": result.task,
        "seed": str(result.seed),
        "status": result.status,
    }
    if result.divergence is not None:  # status diverged: where training stopped and by which rule
        tags["divergence.step"] = str(result.divergence.step)
        tags["divergence.rule"] = result.divergence.rule
    tags.update({str(k): str(v) for k, v in (result.config.get("tags") or {}).items()})
    return tags


def run_params(result: Result) -> dict[str, Any]:
    """The run record as params: its fields, and the resolved peft config's one level deep (their
    values whole: a pattern's keys, such as ``.*q_proj``, are not valid param names)."""
    if result.run is None:
        return {}
    record = result.run.model_dump(mode="json")
    peft_config = record.pop("peft_config")
    # a setting the method has none of (zero-shot's learning rate and batch) is not logged
    params = {f"{RUN_PARAMS}.{key}": value for key, value in record.items() if value is not None}
    if peft_config is None:
        params[f"{RUN_PARAMS}.peft_config"] = None
    else:
        params.update({f"{RUN_PARAMS}.peft_config.{key}": value for key, value in peft_config.items()})
    return params


def find_run(client: Any, experiment_id: str, cell_id: str) -> str | None:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{CELL_TAG}` = '{cell_id}'", max_results=1)
    return runs[0].info.run_id if runs else None


def log_result(
    cell_dir: Path,
    result: Result,
    *,
    uri: str,
    experiment: str,
    parent_run_id: str | None = None,
    run_id: str | None = None,
) -> str:
    """Create or update the cell's run; return its id. Raises on tracking errors."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else create_experiment(client, experiment, uri)
    run_id = run_id or find_run(client, experiment_id, result.cell_id)
    tags = result_tags(result)
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    if run_id is None:
        run_name = f"{result.task}/{result.model}/{result.method}/seed{result.seed}"
        # the cell's own times, not when this logging happens (collect may run hours later)
        start_time = _epoch_ms(result.started_at)
        run_id = client.create_run(experiment_id, start_time=start_time, run_name=run_name, tags=tags).info.run_id
    existing_params = client.get_run(run_id).data.params
    logged = {**flatten(result.config), **run_params(result)}
    params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(logged.items()) if k not in existing_params]
    metrics = [Metric(k, v, 0, 0) for k, v in sorted(result_metrics(result).items())]
    for step, loss in result.efficiency.eval_loss_history:
        metrics.append(Metric("validation/loss", float(loss), 0, int(step)))
    for step, loss in result.efficiency.loss_history:
        metrics.append(Metric("train/loss", float(loss), 0, int(step)))
    run_tags = [RunTag(k, v) for k, v in tags.items()]
    for start in range(0, max(len(params), len(metrics), len(run_tags)), 100):
        client.log_batch(
            run_id,
            metrics=metrics[start : start + 100],
            params=params[start : start + 100],
            tags=run_tags[start : start + 100],
        )
    for name, relative in result.artifacts.items():
        path = cell_dir / relative
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=name)
        elif path.is_file():
            client.log_artifact(run_id, str(path))
    with tempfile.TemporaryDirectory() as tmp:  # the result as read (load_result merges the job's
        # and collect's files with result.json), not the bare file in the folder
        client.log_artifact(run_id, str(write_result(Path(tmp), result)))
    client.set_terminated(
        run_id,
        status="FINISHED" if result.status == "success" else "FAILED",
        end_time=_epoch_ms(result.finished_at),
    )
    return run_id


def _epoch_ms(iso: str | None) -> int | None:
    """A result's ISO timestamp as MLflow's milliseconds since the epoch; None (MLflow then
    takes the current time) for a time not recorded."""
    return round(datetime.fromisoformat(iso).timestamp() * 1000) if iso else None
