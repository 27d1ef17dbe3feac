"""Tasks: data (bundled, local files, Hub), formatting per head, metrics.

Names are imported on first use (:mod:`harness.lazy`): the registry needs no torch."""

from harness.lazy import lazy_exports

_EXPORTS = {
    "check_source": "data",
    "class_weights": "data",
    "load_split": "data",
    "read_table": "data",
    "Example": "formatting",
    "Formatter": "formatting",
    "collate_packed": "formatting",
    "collate_train": "formatting",
    "count_tokens": "formatting",
    "pad_batch": "formatting",
    "classification_scores": "metrics",
    "rouge_scores": "metrics",
    "TASKS": "registry",
    "TaskSpec": "registry",
    "head_for": "registry",
    "resolve_task": "registry",
    "task_of": "registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
