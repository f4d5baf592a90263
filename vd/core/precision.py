"""Which floating-point type a GPU computes in: bf16 only where the GPU has it natively.

`torch.cuda.is_bf16_supported()` counts emulation by default and says True on a T4 (compute
capability 7.5), where every bf16 matmul then runs without fast kernels; native bf16 needs compute
capability 8.0 or newer (Ampere: A100, L4, H100). Every module that picks a dtype asks here.
"""

from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def native_bf16(device: int | None = None) -> bool:
    """Whether the CUDA GPU `device` (default: the current one) computes bf16 natively; False without CUDA."""
    if not torch.cuda.is_available():
        return False
    return torch.cuda.is_bf16_supported(including_emulation=False) if device is None else \
        torch.cuda.get_device_capability(device) >= (8, 0)


def gpu_dtype(choice: str = "auto") -> torch.dtype:
    """The compute dtype `choice` ("auto", "bf16", "fp16", "fp32") names on a GPU: auto is bf16 where the
    GPU has it natively, else fp16 (a T4)."""
    if choice == "auto":
        return torch.bfloat16 if native_bf16() else torch.float16
    return DTYPES[choice]
