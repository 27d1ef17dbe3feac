"""harness: a containerized HPC benchmark harness for parameter-efficient fine-tuning."""

__version__ = "0.1.0"
