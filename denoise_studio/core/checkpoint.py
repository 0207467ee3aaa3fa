"""Checkpoints: one safetensors file holding the weights (and optimizer state) with the
metadata as JSON in its header: spec, config, step, history. Written atomically; never
unpickled, so a checkpoint from a stranger cannot run code."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from denoise_studio.core.errors import CheckpointError
from denoise_studio.core.fileio import atomic_write_bytes
from denoise_studio.core.presets import PRETRAINED, pretrained_path
from denoise_studio.core.spec import spec_from_dict

META_KEY = "denoise_studio"


def _looks_pickled(data: bytes) -> bool:
    """torch.save's zip, or a raw pickle (protocol 2–5), and not a safetensors header."""
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if 0 < n <= len(data) - 8 and data[8:9] == b"{":
        return False
    return data.startswith(b"PK\x03\x04") or (len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5)


@dataclass
class Checkpoint:
    path: Path
    meta: dict                      # spec, config, step, history, optimizer param_groups
    model_state: dict
    optimizer_state: dict | None

    @property
    def spec(self):
        return spec_from_dict(self.meta["spec"], f"{self.path} (spec)")

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


def _optimizer_tensors(optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(path, model: torch.nn.Module, meta: dict, optimizer=None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = dict(meta)
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(opt_tensors)
    data = st_save(tensors, metadata={META_KEY: json.dumps(meta)})
    atomic_write_bytes(path, data)


def load_checkpoint(path) -> Checkpoint:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint.") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({e.strerror}).") from None
    if _looks_pickled(data):
        raise CheckpointError(f"{path} is a pickled PyTorch file; Denoise Studio never unpickles files (they can "
                              "run code). Load the weights yourself and save them with safetensors.")
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get(META_KEY, "null"))
    except Exception as e:   # safetensors raises several types for damaged files
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or corrupt: "
                              f"{str(e).splitlines()[0][:120] if str(e) else type(e).__name__}).") from None
    if not isinstance(meta, dict) or "spec" not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a Denoise Studio checkpoint (no spec in it).")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = meta.get("optimizer")
    optimizer_state = None
    if optim:
        state: dict = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        for k, v in optim.get("scalars", {}).items():
            pid, name = k.split(".", 1)
            state.setdefault(int(pid), {})[name] = v
        optimizer_state = {"state": state, "param_groups": optim["param_groups"]}
    return Checkpoint(path, meta, model_state, optimizer_state)


def load_weights(model: torch.nn.Module, ckpt: Checkpoint) -> None:
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise CheckpointError(f"{ckpt.path}: its weights do not match its spec ({first[:160]}).") from None


def resolve_checkpoint(run_or_checkpoint) -> Path:
    """A checkpoint file, a run folder (its best checkpoint, else its last), or `pretrained`: the
    network shipped with the app (an existing file or folder of that name wins)."""
    p = Path(run_or_checkpoint)
    if str(run_or_checkpoint) == PRETRAINED and not p.exists():
        if not pretrained_path().is_file():
            raise CheckpointError(f"the pretrained network is missing from this installation ({pretrained_path()}); "
                                  "reinstall Denoise Studio or give a run folder.")
        return pretrained_path()
    if p.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (p / "checkpoints" / name).is_file():
                return p / "checkpoints" / name
        raise CheckpointError(f"{p}: this run folder has no checkpoint yet (checkpoints/best.safetensors).")
    if not p.exists():
        raise CheckpointError(f"{p}: no such run folder or checkpoint.")
    return p
