"""Checkpoints: one safetensors file holding the weights (and optimizer state) with the
metadata as JSON in its header: spec, config, step, history. Written atomically; never
unpickled, so a checkpoint from a stranger cannot run code.

`model.*` are the weights every reader uses: with an exponential moving average on (the
trainer's default) they are the average, and the raw weights the optimizer was stepping ride
along as `train.*`, read only to resume training.

Loading trusts nothing in the file: it is read only if it is a regular file under the size cap,
its header is sized and parsed before any tensor, the metadata passes one schema
(`validate_meta`), the stored spec passes validation, and every tensor's name, dtype and shape
is checked against what the spec implies (built on the meta device) before any tensor is read.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import NoReturn

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from denoise_studio.core.analysis import analyze
from denoise_studio.core.errors import CheckpointError, DenoiseError
from denoise_studio.core.fileio import atomic_write_bytes, read_regular
from denoise_studio.core.limits import cap
from denoise_studio.core.network import build_network
from denoise_studio.core.noise import NOISE_PROCESSES
from denoise_studio.core.presets import PRETRAINED, pretrained_path
from denoise_studio.core.spec import ArchitectureSpec, spec_from_dict

META_KEY = "denoise_studio"
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}   # safetensors names
ST_DTYPE = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
            torch.bool: "BOOL"}
OPTIM_KEY = re.compile(r"optim\.(\d{1,9})\.([A-Za-z_][A-Za-z0-9_]*)")
SCALAR_KEY = re.compile(r"(\d{1,9})\.([A-Za-z_][A-Za-z0-9_]*)")


def _looks_pickled(data: bytes) -> bool:
    """torch.save's zip, or a raw pickle (protocol 2–5), and not a safetensors header."""
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if 0 < n <= len(data) - 8 and data[8:9] == b"{":
        return False
    return data.startswith(b"PK\x03\x04") or (len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5)


@dataclass
class Checkpoint:
    path: Path
    meta: dict                      # spec, config, step, history, optimizer param_groups (validated)
    model_state: dict
    optimizer_state: dict | None
    spec: ArchitectureSpec | None = None   # the stored spec, validated
    train_state: dict | None = None        # the raw weights behind an averaged model_state (to resume)

    def __post_init__(self):
        if self.spec is None:
            self.spec = spec_from_dict(self.meta["spec"], f"{self.path} (spec)")

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


def _weights(prefix: str, model: torch.nn.Module) -> dict:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(path, model: torch.nn.Module, meta: dict, optimizer=None,
                    train_model: torch.nn.Module | None = None) -> None:
    """model: the weights to use (an average, when train_model holds the raw ones to resume from)."""
    tensors = _weights("model", model)
    if train_model is not None:
        tensors.update(_weights("train", train_model))
    meta = dict(meta)
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(opt_tensors)
    data = st_save(tensors, metadata={META_KEY: json.dumps(meta)})
    atomic_write_bytes(path, data)


def _groups(pattern: re.Pattern, key: str) -> tuple[str, ...]:
    """The groups of a key validate_meta has already matched against pattern."""
    m = pattern.fullmatch(key)
    assert m is not None, key
    return m.groups()


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def validate_meta(meta, path) -> dict:
    """The one schema of a checkpoint's metadata: returns it, or raises a CheckpointError naming the
    first field that does not fit (so nothing later indexes a list as a dict or an int as a str)."""
    if not isinstance(meta, dict) or "spec" not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a Denoise Studio checkpoint (no spec in it).")

    def bad(field: str, want: str):
        raise CheckpointError(f"{path}: its metadata field {field} is not {want}; the file was damaged or made "
                              "by something other than Denoise Studio.")

    if not isinstance(meta["spec"], dict):
        bad("spec", "an architecture spec object")
    if "step" in meta and not (_is_int(meta["step"]) and meta["step"] >= 0):
        bad("step", "a non-negative integer")
    for key in ("config", "history"):
        if key in meta and not isinstance(meta[key], dict):
            bad(key, "an object")
    if not isinstance(meta.get("history", {}).get("eval", []), list):
        bad("history.eval", "a list")
    if meta.get("best_psnr") is not None and not _is_number(meta["best_psnr"]):
        bad("best_psnr", "a number")
    if "lr_scale" in meta and not (_is_number(meta["lr_scale"]) and 0 < meta["lr_scale"] <= 1):
        bad("lr_scale", "a number in (0, 1]")
    if "noise" in meta:
        _validate_noise(meta["noise"], bad)
    if meta.get("optimizer") is not None:
        opt = meta["optimizer"]
        if not isinstance(opt, dict):
            bad("optimizer", "an object")
        groups = opt.get("param_groups")
        if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                                   and all(_is_int(i) for i in g["params"]) for g in groups):
            bad("optimizer.param_groups", "a list of parameter groups")
        scalars = opt.get("scalars", {})
        if not isinstance(scalars, dict) or not all(SCALAR_KEY.fullmatch(k) for k in scalars):
            bad("optimizer.scalars", "an object of <parameter>.<name> entries")
        if set(opt) - {"param_groups", "scalars"}:
            bad("optimizer", "an object of param_groups and scalars only")
    return meta


def _validate_noise(noise, bad) -> None:
    if not isinstance(noise, dict) or noise.get("noise", "gaussian") not in NOISE_PROCESSES:
        bad("noise", f"an object whose noise is one of {', '.join(NOISE_PROCESSES)}")
    kind = noise.get("noise", "gaussian")
    process = NOISE_PROCESSES[kind]
    if set(noise) - process.config_keys:
        bad("noise", f"{kind} noise settings ({', '.join(sorted(process.config_keys))})")
    for where, must_be in process.config_problems(noise):
        bad(where, must_be)


def _header(data: bytes, path) -> dict:
    """The safetensors JSON header, sized against METADATA_BYTES before it is parsed."""
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    if cap("METADATA_BYTES") < n <= len(data) - 8:
        raise CheckpointError(f"{path}: its header claims {n:,} bytes, over the {cap('METADATA_BYTES'):,}-byte limit "
                              "for checkpoint metadata; the file was damaged or made by something other than "
                              "Denoise Studio (DENOISE_STUDIO_MAX_METADATA_BYTES=N raises the limit).")
    try:
        if not 2 <= n <= len(data) - 8:
            raise ValueError("header length out of range")
        header = json.loads(data[8:8 + n])
        if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
            raise ValueError("header is not an object")
        meta = json.loads(header.get("__metadata__", {}).get(META_KEY, "null"))
    except (ValueError, RecursionError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or corrupt: "
                              f"{str(e).splitlines()[0][:120] if str(e) else type(e).__name__}).") from None
    header.pop("__metadata__", None)
    return {"meta": meta, "tensors": header}


def _stored_spec(meta: dict, path) -> ArchitectureSpec:
    try:
        spec = spec_from_dict(meta["spec"], f"{path} (its spec)")
    except DenoiseError as e:
        raise CheckpointError(str(e)) from None
    errors = analyze(spec).errors
    if errors:
        first = errors[0]
        where = f"block {first.block}: " if first.block is not None else ""
        raise CheckpointError(f"{path}: its stored network is invalid ({where}{first.message.rstrip('.')}); the "
                              "file was damaged, made by something other than Denoise Studio, or made with a "
                              "raised limit.")
    return spec


def _check_tensors(entries: dict, spec: ArchitectureSpec, path) -> None:
    """Every tensor's name, dtype and shape against what the spec implies, before any is read."""
    expected = {f"model.{k}": v for k, v in build_network(spec, meta=True).state_dict().items()}

    def mismatch(what: str) -> NoReturn:
        raise CheckpointError(f"{path}: its weights do not match its spec ({what}).")

    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
            raise CheckpointError(f"{path} is not a readable safetensors checkpoint (tensor {name[:60]!r} has no "
                                  "shape).")
        dtype, shape = entry.get("dtype"), entry["shape"]
        if name.startswith("optim."):
            if not OPTIM_KEY.fullmatch(name):
                raise CheckpointError(f"{path}: tensor {name[:60]!r} is not an optimizer entry "
                                      "(optim.<parameter>.<name>); the file was damaged or made by something "
                                      "other than Denoise Studio.")
            if dtype not in FLOAT_DTYPES:
                raise CheckpointError(f"{path}: optimizer tensor {name[:60]!r} is {dtype}, not floating point; "
                                      "the file was damaged or made by something other than Denoise Studio.")
            continue
        want = expected.get("model." + name[6:] if name.startswith("train.") else name)
        if want is None:
            mismatch(f"unexpected tensor {name[:60]!r}")
        if shape != list(want.shape):
            mismatch(f"{name[6:]} has shape {shape[:8]}, the spec needs {list(want.shape)}")
        if want.dtype.is_floating_point and dtype not in FLOAT_DTYPES:
            mismatch(f"{name[6:]} is {dtype}; weights must be floating point")
        if not want.dtype.is_floating_point and dtype != ST_DTYPE.get(want.dtype):
            mismatch(f"{name[6:]} is {dtype}, the spec needs {ST_DTYPE.get(want.dtype)}")
    missing = sorted(set(expected) - set(entries))
    raw = {"model." + n[6:] for n in entries if n.startswith("train.")}
    if raw and raw != set(expected):   # the raw weights come whole or not at all
        missing = sorted("train." + n[6:] for n in set(expected) - raw)
    if missing:
        mismatch(f"missing {missing[0][6:]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))


def load_checkpoint(path) -> Checkpoint:
    path = Path(path)
    data = read_regular(path, "checkpoint", cap("CHECKPOINT_BYTES"), CheckpointError)
    if _looks_pickled(data):
        raise CheckpointError(f"{path} is a pickled PyTorch file; Denoise Studio never unpickles files (they can "
                              "run code). Load the weights yourself and save them with safetensors.")
    header = _header(data, path)
    meta = validate_meta(header["meta"], path)
    spec = _stored_spec(meta, path)
    _check_tensors(header["tensors"], spec, path)
    try:
        tensors = st_load(data)
    except Exception as e:   # safetensors raises several types for damaged files
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or corrupt: "
                              f"{str(e).splitlines()[0][:120] if str(e) else type(e).__name__}).") from None
    del data
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values; the training that wrote "
                                  "it diverged, or the file was damaged. Use an earlier checkpoint.")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    train_state = {k[6:]: v for k, v in tensors.items() if k.startswith("train.")} or None
    optim = meta.get("optimizer")
    optimizer_state = None
    if optim:
        state: dict = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                pid, name = _groups(OPTIM_KEY, k)
                state.setdefault(int(pid), {})[name] = v
        for k, v in optim.get("scalars", {}).items():
            pid, name = _groups(SCALAR_KEY, k)
            state.setdefault(int(pid), {})[name] = v
        optimizer_state = {"state": state, "param_groups": optim["param_groups"]}
    return Checkpoint(path, meta, model_state, optimizer_state, spec, train_state)


def load_weights(model: torch.nn.Module, ckpt: Checkpoint, raw: bool = False) -> None:
    """The weights to use, or with raw=True the ones training continues from (the same when the
    checkpoint holds no average)."""
    state = ckpt.train_state if raw and ckpt.train_state is not None else ckpt.model_state
    try:
        model.load_state_dict(state, strict=True)
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
