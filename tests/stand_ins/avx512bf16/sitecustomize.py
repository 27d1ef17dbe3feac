"""Make bitsandbytes take its AVX512-BF16 import path on any CPU (tests only).

Put this folder on PYTHONPATH: Python imports ``sitecustomize`` at start-up. When
``bitsandbytes.backends.cpu.ops`` is first imported, ``bitsandbytes.functional.has_avx512bf16``
answers True, so the real module runs the branch that CPUs with the flag run: it tries the
optional ``kernels`` package and logs a warning at import time. Tests of the CLI's stderr
then see what a user on such a CPU sees, whatever CPU the tests run on.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any

TARGET = "bitsandbytes.backends.cpu.ops"


class _ForceAvx512Bf16(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            functional = sys.modules.get("bitsandbytes.functional")
            if functional is not None:
                functional.has_avx512bf16 = lambda: True
            original(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _ForceAvx512Bf16())
