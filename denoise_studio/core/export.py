"""Export a trained network: ONNX, TorchScript, or a standalone PyTorch file."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.fileio import atomic_write_bytes, atomic_write_text
from denoise_studio.core.inference import LoadedModel
from denoise_studio.core.network import network_code

FORMATS = ("onnx", "torchscript", "python")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "python": ".py"}


def _example(lm: LoadedModel):
    size = max(64, 4 * lm.factor)
    x = torch.randn(1, lm.spec.in_channels, size, size)
    return (x, torch.tensor([1.0])) if lm.spec.conditioning != "none" else (x,)


def export_paths(fmt: str, out, overwrite: bool = False) -> list[Path]:
    """The files an export writes (python: the code and FILE.safetensors beside it), refused in one
    line when one is a folder, the two would be the same file, or (without overwrite) one exists.
    Cheap: call it before loading the model, so a refusal costs nothing."""
    if fmt not in FORMATS:
        raise DenoiseError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    out = Path(out)
    if out.is_dir() or not out.name:
        raise DenoiseError(f"--out {out} is a folder; give a file name, e.g. {out / ('model' + SUFFIX[fmt])}.")
    paths = [out]
    if fmt == "python":
        weights = out.with_suffix(".safetensors")
        if weights == out or (weights.exists() and out.exists() and os.path.samefile(weights, out)):
            raise DenoiseError(f"--out {out} is where the weights go; name the code file "
                               f"{out.with_suffix('.py').name} (the weights are written beside it as "
                               f"{weights.name}).")
        if weights.is_dir():
            raise DenoiseError(f"{weights} is a folder, and the weights of --out {out} go there; choose another "
                               "--out.")
        paths.append(weights)
    existing = [p for p in paths if os.path.lexists(p)]   # a link, even a dangling one, is the user's file
    if existing and not overwrite:
        one = len(existing) == 1
        raise DenoiseError(f"{' and '.join(map(str, existing))} already exist{'s' if one else ''}; add --overwrite "
                           f"to replace {'it' if one else 'them'}, or choose another --out.")
    return paths


def export(lm: LoadedModel, fmt: str, out, overwrite: bool = False) -> list[Path]:
    """Write the export; returns the files written (python also writes FILE.safetensors). Every
    file is written atomically; an unwritable place is one line naming it. An existing file is
    replaced only with overwrite (checked again here: one may have appeared while the model loaded)."""
    paths = export_paths(fmt, out, overwrite)
    try:
        return _export(lm, fmt, paths)
    except OSError as e:
        where = e.filename or paths[0]
        raise DenoiseError(f"cannot write {where} ({e.strerror or e}); choose another --out.") from None


def _export(lm: LoadedModel, fmt: str, paths: list[Path]) -> list[Path]:
    out = paths[0]
    model = lm.model.cpu().eval()
    args = _example(lm)
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise DenoiseError("ONNX export needs the onnx package: pip install 'denoise-studio[export]'.") from None
        names = ["x", "cond"][:len(args)]
        axes = {"x": {0: "batch", 2: "height", 3: "width"}, "noise": {0: "batch", 2: "height", 3: "width"}}
        if len(args) == 2:
            axes["cond"] = {0: "batch"}
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a file object works, though torch's annotation says a path
            torch.onnx.export(model, args, buf, dynamo=False, input_names=names,  # type: ignore[arg-type]
                              output_names=["noise"], dynamic_axes=axes, opset_version=17)
        atomic_write_bytes(out, buf.getvalue())
        return [out]
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, args, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        atomic_write_bytes(out, buf.getvalue())
        return [out]
    code = network_code(lm.spec)
    weights = st_save({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()})
    existed = paths[1].exists()
    atomic_write_bytes(paths[1], weights)
    try:
        atomic_write_text(out, code)
    except OSError:
        if not existed:   # no half export left behind
            paths[1].unlink(missing_ok=True)
        raise
    return paths
