"""harness: a containerized HPC benchmark harness for parameter-efficient fine-tuning."""

import logging as _logging

__version__ = "0.1.0"

# peft imports bitsandbytes whenever it is installed, and on CPUs with AVX512-BF16
# bitsandbytes logs a warning at import time (an optional CPU kernel package is missing).
# With no handler of its own that record reaches Python's last-resort stderr handler, so
# every command printed it and a one-line error became two. A NullHandler keeps it off
# stderr; handlers a user or a cell attaches to the root logger (a cell's log.txt) still
# receive bitsandbytes' other records. Set here because importing any harness module comes
# before importing peft.
_logging.getLogger("bitsandbytes").addHandler(_logging.NullHandler())
# The CPU ops module logs nothing but that import-time warning, which says nothing about a
# cell: it does not propagate to the root logger either, so no cell's log.txt carries it.
_bnb_cpu_ops = _logging.getLogger("bitsandbytes.backends.cpu.ops")
_bnb_cpu_ops.addHandler(_logging.NullHandler())
_bnb_cpu_ops.propagate = False
