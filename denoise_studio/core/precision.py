"""The fastest numeric path a device has that keeps quality, decided from what the hardware says.

- CUDA: bf16 autocast where the GPU supports bf16, else fp16 with a gradient scaler.
- CPU with native bf16 (Intel AMX, or AVX512-BF16 on Intel and AMD Zen 4+): bf16 autocast —
  measured 1.9–2.0× fp32 for unet-small on such CPUs (bench/training_speed.py).
- Any other CPU: fp32. Without those instructions bf16 is emulated and runs 25× slower.

Detection reads the CPU's flags (Linux /proc/cpuinfo), never its model name.
"""
from __future__ import annotations

import functools

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_native_bf16() -> str | None:
    """The CPU flag that makes bf16 fast here (amx_bf16 or avx512_bf16), or None."""
    flags = cpu_flags()
    return next((f for f in NATIVE_BF16_FLAGS if f in flags), None)


def auto_amp(device_type: str) -> str:
    """What `--amp auto` means on this device: bf16, fp16 or off."""
    if device_type == "cuda":
        import torch
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_type == "cpu":
        return "bf16" if cpu_native_bf16() else "off"
    return "off"


def resolve_amp(device_type: str, amp: str) -> tuple[str, object]:
    """`auto`, off, bf16 or fp16 → (the path taken, its autocast dtype or None for fp32)."""
    import torch
    amp = auto_amp(device_type) if amp == "auto" else amp
    return amp, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)


def describe(device_type: str, amp: str) -> str:
    """One line for the app and config.json: the path chosen and why."""
    if device_type == "cpu":
        flag = cpu_native_bf16()
        if amp == "bf16":
            return f"bf16 autocast (CPU has {flag})" if flag else "bf16 autocast (emulated on this CPU: slow)"
        return "fp32" + ("" if flag else " (no native bf16 on this CPU)")
    return {"bf16": "bf16 autocast", "fp16": "fp16 autocast with gradient scaling"}.get(amp, "fp32")
