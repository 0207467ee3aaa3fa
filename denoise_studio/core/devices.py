"""Devices: what can train here, with names, memory and the reason when unavailable."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from denoise_studio.core.errors import DeviceError


@dataclass
class DeviceInfo:
    id: str            # "cpu", "cuda:0", "mps"
    name: str
    available: bool
    memory_bytes: int | None = None
    reason: str = ""   # why it is unavailable

    @property
    def label(self) -> str:
        mem = f", {self.memory_bytes / 2**30:.0f} GiB" if self.memory_bytes else ""
        return f"{self.id}: {self.name}{mem}" if self.available else f"{self.id}: unavailable ({self.reason})"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "CPU"


def list_devices() -> list[DeviceInfo]:
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = None
    out = [DeviceInfo("cpu", f"{cpu_name()} ({os.cpu_count()} threads)", True, mem)]
    if torch.version.cuda is None:
        out.append(DeviceInfo("cuda", "NVIDIA GPU", False, reason="this torch build has no CUDA (a CPU build)"))
    elif not torch.cuda.is_available():
        out.append(DeviceInfo("cuda", "NVIDIA GPU", False, reason="no NVIDIA driver or GPU found"))
    else:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(DeviceInfo(f"cuda:{i}", p.name, True, p.total_memory))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(DeviceInfo("mps", "Apple GPU (Metal)", True))
    elif mps is not None and mps.is_built():
        out.append(DeviceInfo("mps", "Apple GPU (Metal)", False, reason="no Metal device on this machine"))
    return out


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then MPS, then CPU; an unavailable choice is a DeviceError."""
    name = (name or "auto").lower()
    shown = repr(name if len(name) <= 40 else name[:40] + "…")   # a 5000-character name is not echoed whole
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {shown}; use auto, cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda":
        info = next(d for d in list_devices() if d.id.startswith("cuda"))
        if not info.available:
            raise DeviceError(f"device {name} is not available: {info.reason}; use --device cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name} does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s).")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device {name} is not available: no Metal device; use --device cpu.")
    elif dev.type != "cpu":
        raise DeviceError(f"unsupported device {shown}; use auto, cpu, cuda, cuda:N or mps.")
    return dev
