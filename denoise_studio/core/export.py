"""Export a trained network: ONNX, TorchScript, or a standalone PyTorch file."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.fileio import atomic_write_bytes, atomic_write_text
from denoise_studio.core.inference import LoadedModel
from denoise_studio.core.network import network_code

FORMATS = ("onnx", "torchscript", "python")


def _example(lm: LoadedModel):
    size = max(64, 4 * lm.factor)
    x = torch.randn(1, lm.spec.in_channels, size, size)
    return (x, torch.tensor([1.0])) if lm.spec.conditioning != "none" else (x,)


def export(lm: LoadedModel, fmt: str, out) -> list[Path]:
    """Write the export; returns the files written (python also writes FILE.safetensors)."""
    out = Path(out)
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
            torch.onnx.export(model, args, buf, dynamo=False, input_names=names, output_names=["noise"],
                              dynamic_axes=axes, opset_version=17)
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
    if fmt == "python":
        weights = out.with_suffix(".safetensors")
        atomic_write_text(out, network_code(lm.spec))
        atomic_write_bytes(weights, st_save({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}))
        return [out, weights]
    raise DenoiseError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
