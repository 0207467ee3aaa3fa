"""Build the `nn.Module` a spec describes, and write it out as plain PyTorch code."""
from __future__ import annotations

import inspect

import torch

from denoise_studio.core import modules
from denoise_studio.core.analysis import analyze, downsampling_factor, embedding_width
from denoise_studio.core.blocks import BLOCK_TYPES, BlockContext
from denoise_studio.core.errors import SpecInvalidError
from denoise_studio.core.limits import check_memory
from denoise_studio.core.spec import ArchitectureSpec

HEAD_INIT_SCALE = 0.01  # a near-zero last layer starts training at "predict no noise"


def _check_size(spec: ArchitectureSpec) -> int:
    """A size at which only size-independent problems can show."""
    return max(32, 4 * downsampling_factor(spec))


def block_constructors(spec: ArchitectureSpec) -> list[tuple[type, dict]]:
    """(modules class, keyword arguments) for each block; raises SpecInvalidError if invalid."""
    return _constructors(spec)[0]


def _constructors(spec: ArchitectureSpec):
    size = _check_size(spec)
    analysis = analyze(spec, size)
    if not analysis.valid:
        raise SpecInvalidError(analysis.errors)
    saved: dict = {}
    out = []
    for b, report in zip(spec.blocks, analysis.blocks, strict=True):
        ctx = BlockContext(in_shape=report.input_shape, saved=saved, emb_dim=embedding_width(spec))
        out.append(BLOCK_TYPES[b["type"]].constructor(b, ctx))
        if b.get("id"):
            saved[b["id"]] = (report.output_shape, 0, 0)
    return out, analysis


def _keep(spec: ArchitectureSpec) -> dict:
    return {str(i): b["id"] for i, b in enumerate(spec.blocks) if b.get("id")}


def build_network(spec: ArchitectureSpec, meta: bool = False) -> modules.Denoiser:
    """The network, its weights freshly initialised; meta=True builds it on the meta device (shapes
    and dtypes, no memory). A real build first checks that its fp32 weights fit in memory."""
    constructors, analysis = _constructors(spec)
    if meta:
        with torch.device("meta"):
            return _assemble(spec, constructors)
    check_memory(4 * analysis.total_params, f"a network of {analysis.total_params:,} parameters",
                 "choose a smaller network (fewer channels, smaller kernels or fewer blocks).")
    return _assemble(spec, constructors)


def _assemble(spec: ArchitectureSpec, constructors) -> modules.Denoiser:
    blocks = [cls(**kwargs) for cls, kwargs in constructors]
    net = modules.Denoiser(blocks, keep=_keep(spec), conditioning=spec.conditioning,
                           emb_dim=spec.embedding_dim)
    head = [m for m in blocks[-1].modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    if head:
        with torch.no_grad():
            head[-1].weight.mul_(HEAD_INIT_SCALE)
    return net


def _call(cls: type, kwargs: dict) -> str:
    return f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def network_code(spec: ArchitectureSpec) -> str:
    """Standalone Python (torch only) that builds this network with the same state_dict keys.

    Text from the spec (name, description, ids) can be anything a stranger wrote, so it reaches
    the code only as repr() literals: never inside the docstring, a comment or an f-string."""
    constructors = block_constructors(spec)
    calls = "\n".join(f"        {_call(cls, kw)},  # {i}: {spec.blocks[i]['type']}"
                      for i, (cls, kw) in enumerate(constructors))
    source = inspect.getsource(modules).split('"""', 2)[2].lstrip("\n")
    # a block type registered outside core (a plug-in, a test) brings its module's class along;
    # it may use what modules.py imports (math, torch, nn, F)
    extra = list(dict.fromkeys(cls for cls, _ in constructors if getattr(modules, cls.__name__, None) is not cls))
    source += "".join(f"\n\n{inspect.getsource(cls)}" for cls in extra)
    return ('"""A noise-prediction network exported by Denoise Studio (its name and description are\n'
            "NAME and DESCRIPTION below).\n\n"
            f"Input: (B, {int(spec.in_channels)}, H, W) with H, W multiples of {int(downsampling_factor(spec))}; "
            "output: the predicted noise, same shape.\n"
            "Load weights with model.load_state_dict(safetensors.torch.load_file(...)).\n\"\"\"\n"
            f"{source}\n\n"
            f"NAME = {spec.name!r}\n"
            f"DESCRIPTION = {spec.description!r}\n"
            f"CONDITIONING = {spec.conditioning!r}\n"
            f"IN_CHANNELS = {int(spec.in_channels)!r}\n\n\n"
            "def build_model():\n"
            f"    blocks = [\n{calls}\n    ]\n"
            f"    return Denoiser(blocks, keep={_keep(spec)!r}, conditioning=CONDITIONING, "
            f"emb_dim={int(spec.embedding_dim)!r})\n\n\n"
            'if __name__ == "__main__":\n'
            "    model = build_model()\n"
            "    x = torch.randn(1, IN_CHANNELS, 64, 64)\n"
            "    print(NAME, tuple(model(x).shape), sum(p.numel() for p in model.parameters()), 'parameters')\n")
