"""FSDP for ``train.distributed: fsdp``: parameters, gradients and optimizer state sharded over the
ranks with torch's FSDP2 (``torch.distributed.fsdp.fully_shard``).

- **Wrapping plan** (:func:`wrapping_plan`): every module of a class the model names in its
  ``_no_split_modules`` (transformers' own list of blocks that must stay whole: Llama's decoder
  layers, T5's blocks, BERT's layers) is its own FSDP unit, then the root. With peft the adapter
  weights live inside those blocks, so frozen and trainable parameters share units, which FSDP2
  allows (it keeps each parameter's ``requires_grad``; FSDP1's ``use_orig_params`` is not needed).
- **Mixed precision** on GPUs: parameters gathered in the model's dtype, gradients reduced in
  fp32. QLoRA stores its 4-bit weights in the compute dtype (``bnb_4bit_quant_storage``), so
  that FSDP can shard them like any other parameter.
- **State**: checkpoints and the final weights are full state dicts gathered by every rank (a
  collective) and written by rank 0. A preemption signal reaches rank 0 alone, which cannot
  gather then: an FSDP cell resumes from its last periodic checkpoint (``train.checkpoint_every``).
- **Evaluation**: rank 0 loads the gathered weights into an unsharded copy of the model.
"""

from __future__ import annotations

from typing import Any

import torch


def wrapping_plan(model: torch.nn.Module) -> list[str]:
    """Names of the modules that become FSDP units (the root is wrapped after them)."""
    classes: set[str] = set()
    for module in model.modules():
        names = getattr(module, "_no_split_modules", None)
        if names:
            classes.update(names)
            break
    if not classes:
        raise ValueError(f"{type(model).__name__} names no _no_split_modules: no transformer blocks to shard")
    return [name for name, module in model.named_modules() if type(module).__name__ in classes]


def shard(model: torch.nn.Module, device: torch.device, *, cpu_offload: bool = False) -> list[str]:
    """Shard the model in place (blocks, then the root); returns the wrapped blocks' names.
    ``cpu_offload`` (train.fsdp_cpu_offload, GPU runs): shards live in CPU memory between uses."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    dtype = next(model.parameters()).dtype
    on_gpu = device.type == "cuda"
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if on_gpu else MixedPrecisionPolicy()
    offload = CPUOffloadPolicy() if cpu_offload and on_gpu else OffloadPolicy()
    plan = wrapping_plan(model)
    modules = dict(model.named_modules())
    for name in plan:
        fully_shard(modules[name], mesh=mesh, mp_policy=policy, offload_policy=offload)
    fully_shard(model, mesh=mesh, mp_policy=policy, offload_policy=offload)
    return plan


def _options(**changes: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **changes)


def full_trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights, whole, on the CPU of rank 0 (every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    state = get_model_state_dict(model, options=_options())
    return {name: tensor for name, tensor in state.items() if name in trainable}


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight, whole, on the CPU of rank 0 (every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options())


def full_optimizer_state(model: torch.nn.Module, optimizer: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options())


def load_full_state(
    model: torch.nn.Module, optimizer: Any, weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any]
) -> None:
    """Every rank loads the whole checkpoint and keeps its shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=optimizer_state, options=options)
