"""Base models: presets (plain data), loading for three heads, parameter counts.

Names are imported on first use (:mod:`harness.lazy`): the registry needs no torch."""

from harness.lazy import lazy_exports

_EXPORTS = {
    "LoadedModel": "loading",
    "load_model": "loading",
    "materialise": "loading",
    "package_dir": "loading",
    "count_module_parameters": "params",
    "build_meta_model": "params",
    "FAMILIES": "registry",
    "PRESETS": "registry",
    "ModelSpec": "registry",
    "cache_dir": "registry",
    "has_chat_template": "registry",
    "resolve_model": "registry",
    "valid_model_names": "registry",
    "validate_model_name": "registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
