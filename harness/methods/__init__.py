"""Methods: PEFT configs per model family, combination checks, per-step hooks.

Names are imported on first use (:mod:`harness.lazy`): the registry needs neither torch nor peft."""

from harness.lazy import lazy_exports

_EXPORTS = {
    "after_optimizer_step": "build",
    "apply_method": "build",
    "build_peft_config": "build",
    "check_combination": "build",
    "count_parameters": "build",
    "default_learning_rate": "build",
    "is_prompt_learning": "build",
    "resolve_method_args": "build",
    "resolved_peft_config": "build",
    "MethodSpec": "registry",
    "method_names": "registry",
    "methods": "registry",
    "resolve_method": "registry",
    "MethodHooks": "hooks",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
