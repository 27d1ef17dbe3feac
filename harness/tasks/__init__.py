"""Tasks: data (bundled, local files, Hub), formatting per head, metrics."""

from harness.tasks.data import check_source, class_weights, load_split, read_table
from harness.tasks.formatting import Example, Formatter, collate_packed, collate_train, count_tokens, pad_batch
from harness.tasks.metrics import classification_scores, rouge_scores
from harness.tasks.registry import TASKS, TaskSpec, head_for, resolve_task

__all__ = [
    "TASKS", "Example", "Formatter", "TaskSpec", "check_source", "class_weights", "classification_scores", "collate_packed", "collate_train",
    "count_tokens", "head_for", "load_split", "pad_batch", "read_table", "resolve_task", "rouge_scores",
]
