"""Model FLOPs utilisation: the share of the device's dense bf16 peak that training used.

Model FLOPs per token follow the usual 6N rule, split by what a method computes:

- forward through every weight: 2N;
- backward, gradients of the activations through every weight: 2N (a frozen base still
  passes gradients down to the adapters below it);
- backward, gradients of the weights: 2T, for the T trainable ones only.

So full fine-tuning costs 6N per token and a PEFT method 4N + 2T, where N counts every
parameter (4-bit weights at their logical size) and T the trainable ones. Attention's own
FLOPs (the QK^T and AV products) and a gradient-checkpointing recompute are left out, as
in PaLM's MFU: it measures useful model work, not what the hardware did.
"""

from __future__ import annotations

# Dense bf16 tensor-core peak in TFLOP/s from the vendors' datasheets (no sparsity), by the
# name torch.cuda.get_device_name reports. The most specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 6000 Ada", 364.0),
    ("A6000", 155.0),
)


def peak_bf16_flops(device_name: str | None) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None for a device not in the table (or a CPU)."""
    if not device_name:
        return None
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops * 1e12
    return None


def model_flops_per_token(total_params: int, trainable_params: int) -> float:
    """4N + 2T (6N when every weight trains)."""
    return 4.0 * total_params + 2.0 * trainable_params


def mfu(tokens_per_s: float | None, total_params: int, trainable_params: int, device_name: str | None) -> float | None:
    peak = peak_bf16_flops(device_name)
    if not tokens_per_s or peak is None or not total_params:
        return None
    return tokens_per_s * model_flops_per_token(total_params, trainable_params) / peak
