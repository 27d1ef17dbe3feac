"""Base models: presets (plain data), loading for three heads, parameter counts."""

from harness.models.loading import Head, LoadedModel, load_model, materialise, package_dir
from harness.models.params import count_module_parameters, build_meta_model
from harness.models.registry import PRESETS, ModelSpec, cache_dir, resolve_model, valid_model_names, validate_model_name

__all__ = [
    "PRESETS", "Head", "LoadedModel", "ModelSpec", "build_meta_model", "cache_dir", "count_module_parameters",
    "load_model", "materialise", "package_dir", "resolve_model", "valid_model_names", "validate_model_name",
]
