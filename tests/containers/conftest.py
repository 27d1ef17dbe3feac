"""Fixtures for the container tests (tests/ is not a package: helpers live here)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # slurm_cluster
sys.path.insert(0, str(REPO / "tests" / "dispatch"))  # dispatch_helpers
