"""Tracking: MLflow, and only MLflow. Logging a result, collecting a matrix, and the cell recorded
as it ends (:mod:`harness.tracking.record`, the runner jobs run). Fails open."""

from harness.dotted import flatten
from harness.tracking.mlflow_log import default_tracking_uri, find_run, log_result, result_metrics

__all__ = ["default_tracking_uri", "find_run", "flatten", "log_result", "result_metrics"]
