"""Methods: PEFT configs per model family, combination checks, per-step hooks."""

from harness.methods.build import (
    after_optimizer_step,
    apply_method,
    build_peft_config,
    check_combination,
    count_parameters,
    resolve_method_args,
)
from harness.methods.registry import METHODS, MethodSpec, resolve_method

__all__ = [
    "METHODS", "MethodSpec", "after_optimizer_step", "apply_method", "build_peft_config", "check_combination",
    "count_parameters", "resolve_method", "resolve_method_args",
]
