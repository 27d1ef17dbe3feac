"""Headless Chromium (Debian's ``chromium``) for tests of what a person looks at: it loads a page,
runs its scripts within a virtual-time budget and prints the DOM it ended with."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

# Flags for a closed network: without the background-networking ones Chromium keeps trying
# (and failing) to reach Google's hosts; root needs --no-sandbox.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def dump_dom(url: str, profile: Path, *, width: int = 1400, height: int = 1000, budget_ms: int = 5000) -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `make browser` (part of `make test`) installs it")
    done = subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return done.stdout


def visible_text(dom: str) -> str:
    """The page's text, without scripts and styles, whitespace collapsed."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()
