"""Validation and shape inference, without running the network.

`analyze(spec, size)` walks the blocks once and reports, for every block, its output
shape, parameters, FLOPs, receptive field and activation memory, plus every problem in
the spec at once: each names the block, says what is wrong and how to fix it, and most
carry a machine-applicable patch (the GUI's one-click fix).

Parameters come from building each block's module on the meta device (no memory, exact
count); FLOPs count 2 × multiply-adds of every conv, linear and attention product. A block
is built only once every field has passed its type and range check (channels, kernel and
image size are capped, core/limits.py), so no value from a document reaches torch unchecked.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from denoise_studio.core import modules
from denoise_studio.core.blocks import (
    ACTIVATION_MIN,
    BLOCK_TYPES,
    GROUPS_DO_NOT_DIVIDE,
    NOT_DIVISIBLE,
    BlockContext,
    block_type_name,
    divisor_at_most,
    parse_norm,
    show,
)
from denoise_studio.core.limits import cap
from denoise_studio.core.spec import CONDITIONING, ArchitectureSpec


@dataclass
class Issue:
    level: str              # "error" or "warning"
    block: int | None       # index into spec.blocks, None for the whole network
    message: str
    fix: str
    patch: dict | None = None   # see spec.apply_patch
    code: str = ""              # what kind of issue (blocks.NOT_DIVISIBLE, …): match this, never the message

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        where = f"block {self.block}" if self.block is not None else "network"
        return f"{self.level}: {where}: {self.message} Fix: {self.fix}"


@dataclass
class BlockReport:
    index: int
    type: str
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    params: int | None = None        # None when the block has an error
    flops: int | None = None
    receptive_field: float = 1.0     # inf once attention has seen every position
    activation_bytes: int = 0        # fp32 output of this block, batch 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        d["input_shape"] = list(self.input_shape)
        d["receptive_field"] = None if math.isinf(self.receptive_field) else int(self.receptive_field)
        return d


@dataclass
class Analysis:
    size: int
    blocks: list[BlockReport] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    total_params: int = 0
    total_flops: int = 0
    activation_bytes: int = 0
    receptive_field: float = 1.0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def issues_for(self, index: int) -> list[Issue]:
        # indexed, so a report over thousands of blocks stays linear
        if getattr(self, "_index_len", None) != len(self.issues):
            self._index: dict = {}
            for issue in self.issues:
                self._index.setdefault(issue.block, []).append(issue)
            self._index_len = len(self.issues)
        return list(self._index.get(index, ()))

    def to_dict(self) -> dict:
        rf_global = math.isinf(self.receptive_field)
        return {
            "valid": self.valid, "size": self.size,
            "errors": [i.to_dict() for i in self.errors],
            "warnings": [i.to_dict() for i in self.warnings],
            "blocks": [b.to_dict() for b in self.blocks],
            "total_params": self.total_params, "total_flops": self.total_flops,
            "activation_bytes": self.activation_bytes,
            "receptive_field": self.size if rf_global else int(self.receptive_field),
            "receptive_field_global": rf_global,
        }


def block_flops(module: nn.Module, out_hw: tuple[int, int]) -> int:
    """2 × multiply-adds. Every conv inside a block runs at the block's output resolution."""
    h, w = out_hw
    total = 0
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):   # each input pixel (a quarter of the output's) scatters k×k
            total += 2 * (h * w // 4) * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Conv2d):
            total += 2 * h * w * m.out_channels * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
        elif isinstance(m, modules.SelfAttention):   # QKᵀ and AV
            total += 2 * 2 * (h * w) ** 2 * m.out.out_channels
    return total


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def embedding_width(spec: ArchitectureSpec) -> int:
    """Width of the timestep embedding that residual blocks receive (0 without one)."""
    return 4 * spec.embedding_dim if spec.conditioning == "timestep" else 0


def input_channels(spec: ArchitectureSpec) -> int:
    """Channels entering the first block: noise_level conditioning appends a σ channel."""
    return spec.in_channels + (1 if spec.conditioning == "noise_level" else 0)


def input_channels_valid(spec: ArchitectureSpec) -> bool:
    c = spec.in_channels
    return isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 64


def _check_top(spec: ArchitectureSpec) -> list[Issue]:
    issues = []

    def err(message, fix, patch=None):
        issues.append(Issue("error", None, message, fix, patch))

    for key in ("name", "description"):
        value = spec.not_text.get(key, getattr(spec, key))
        if key in spec.not_text or not isinstance(value, str):
            err(f'"{key}" is {show(value)}; it must be a string.', f'set "{key}" to a text.',
                {"set_top": {key: str(getattr(spec, key))}})
    c = spec.in_channels
    if not input_channels_valid(spec):
        err(f'"in_channels" is {show(c)}; it must be an integer from 1 to 64 (3 for RGB, 1 for grey).',
            "set it to 3.", {"set_top": {"in_channels": 3}})
    if not (isinstance(spec.predict, str) and spec.predict == "noise"):
        err(f'"predict" is {show(spec.predict)}; this version predicts the added noise only.',
            'set "predict" to "noise".', {"set_top": {"predict": "noise"}})
    if not (isinstance(spec.conditioning, str) and spec.conditioning in CONDITIONING):
        err(f'"conditioning" is {show(spec.conditioning)}; it must be one of {", ".join(CONDITIONING)}.',
            'set it to "none".', {"set_top": {"conditioning": "none"}})
    e = spec.embedding_dim
    if not isinstance(e, int) or isinstance(e, bool) or e < 2 or e % 2 or e > 2048:
        err(f'"embedding_dim" is {show(e)}; it must be an even integer from 2 to 2048.',
            "set it to 32.", {"set_top": {"embedding_dim": 32}})
    for key in spec.unknown:
        err(f"unknown top-level field {show(key)}.", "remove it.", None)
    if not spec.blocks:
        err("the network has no blocks.", "add blocks, ending in a conv block with out_channels = in_channels.")
    return issues


def _check_norm(bt, b, ctx, index, is_head) -> list[Issue]:
    norm = bt.get(b, "norm") if any(p.name == "norm" for p in bt.params) else None
    channels = bt.norm_channels(b, ctx)
    try:
        groups = parse_norm(norm) if norm is not None else None
    except ValueError:
        return []  # check_fields reported it
    if groups is None or not isinstance(channels, int) or channels % groups == 0:
        return []
    msg = (f"GroupNorm({groups}, {channels}): {groups} groups do not divide {channels} channels, "
           "so PyTorch refuses to build it.")
    if is_head:
        return [Issue("error", index, msg + " This is the output head, which should not be normalised at all.",
                      "make the head a plain linear conv: norm none, act none.",
                      {"block": index, "set": {"norm": "none", "act": "none"}}, GROUPS_DO_NOT_DIVIDE)]
    g = divisor_at_most(channels, groups)
    return [Issue("error", index, msg, f"use group:{g}, a divisor of {channels}.",
                  {"block": index, "set": {"norm": f"group:{g}"}}, GROUPS_DO_NOT_DIVIDE)]


def _check_head(spec, reports, size) -> list[Issue]:
    issues = []
    last = len(spec.blocks) - 1
    b = spec.blocks[last]
    bt = BLOCK_TYPES.get(block_type_name(b) or "")
    out = reports[-1].output_shape
    c = spec.in_channels if input_channels_valid(spec) else 3
    head_fix = {"block": last, "set": {"norm": "none", "act": "none"}}
    if out[0] != c:
        if bt is not None and any(p.name == "out_channels" for p in bt.params):
            patch = {"block": last, "set": {"out_channels": c}}
        else:
            patch = {"block": last + 1, "insert": {"type": "conv", "out_channels": c, "kernel": 3,
                                                    "norm": "none", "act": "none"}}
        issues.append(Issue("error", last, f"the network outputs {out[0]} channels; predicted noise needs "
                                           f"in_channels = {c}.",
                            f"end with a conv block of {c} output channels.", patch))
    if out[1:] != (size, size):
        issues.append(Issue("error", last, f"the network outputs {out[1]}×{out[2]} from a {size}×{size} input; "
                                           "predicted noise must have the input's size.",
                            "use as many upsamplings as downsamplings."))
    if bt is None or any(p.level == "error" for p in bt.check_fields(b)):
        return issues   # the head's own fields are wrong (reported): its activation and norm mean nothing yet
    act = bt.get(b, "act") if bt is not None and bt.has_act else "none"
    low = ACTIVATION_MIN.get(act)
    if act in ("relu", "silu", "gelu", "mish"):
        issues.append(Issue("error", last, f"the output head ends in {act}, which cannot go below {low}: "
                                           "it cannot predict negative noise, half of all noise values.",
                            "remove the head's activation (act none) and norm.", head_fix))
    elif act == "tanh":
        issues.append(Issue("warning", last, "the output head ends in tanh, bounded to [-1, 1]: noise "
                                             "beyond ±1 (σ above ~100/255) is clipped.",
                            "remove the head's activation (act none).", head_fix))
    norm = bt.get(b, "norm") if bt is not None and bt.norm_on_output else "none"
    if norm != "none" and not any(i.block == last and i.code == GROUPS_DO_NOT_DIVIDE for i in issues):
        try:
            groups = parse_norm(norm)
            ok = groups is None or c % groups == 0
        except ValueError:
            ok = False
        if ok:
            issues.append(Issue("warning", last, f"the output head is normalised ({norm}): it forces the "
                                                 "predicted noise to a fixed mean and variance per group.",
                                "set the head's norm to none.", head_fix))
    return issues


def analyze(spec: ArchitectureSpec, size: int = 64) -> Analysis:
    """Validate `spec` and infer every block's shape and cost for a size×size input."""
    result = Analysis(size=size)
    top = _check_top(spec)
    result.issues += top
    # A bad top-level value is reported once; the blocks are still checked with a stand-in.
    usable = not any(i.patch and set(i.patch["set_top"]) & {"in_channels", "conditioning", "embedding_dim"}
                     for i in top)
    shape = (input_channels(spec) if usable else 3, size, size)
    emb = embedding_width(spec) if usable else 0
    saved: dict = {}
    rf, jump = 1.0, 1.0
    n_down = n_embedded = 0
    factor = 1
    for i, b in enumerate(spec.blocks):
        bt = BLOCK_TYPES.get(block_type_name(b) or "")
        if bt is None:
            result.issues.append(Issue("error", i, f"unknown block type {show(b.get('type'))}.",
                                       f"use one of: {', '.join(BLOCK_TYPES)}."))
            result.blocks.append(BlockReport(i, show(b.get("type"), 20), shape, shape, receptive_field=rf))
            continue
        ctx = BlockContext(in_shape=shape, saved=saved, emb_dim=emb)
        own = [_issue(i, p) for p in bt.check_fields(b)]
        fields_ok = not any(x.level == "error" for x in own)
        if fields_ok:
            own += [_issue(i, p) for p in bt.check(b, ctx)]
            own += _check_norm(bt, b, ctx, i, is_head=(i == len(spec.blocks) - 1))
        bid = b.get("id")
        if isinstance(bid, str) and bid in saved:
            own.append(Issue("error", i, f"id {show(bid)} is already used by an earlier block.",
                             "give each block a unique id.", {"block": i, "set": {"id": f"{bid}_{i}"}}))
        oc, oh, ow = bt.out_shape(b, ctx) if fields_ok else shape
        out = (oc, oh, ow)
        out_issues, carry = _check_out_shape(out, shape, i)
        own += out_issues
        ok = not any(x.level == "error" for x in own)
        report = BlockReport(i, bt.name, shape, out)
        if ok:
            cls, kwargs = bt.constructor(b, ctx)
            with torch.device("meta"):
                module = cls(**kwargs)
            report.params = count_params(module)
            report.flops = block_flops(module, (oh, ow))
        if fields_ok:
            rf, jump = bt.receptive(b, rf, jump, ctx)
        report.receptive_field = rf
        result.issues += own
        out = report.output_shape = carry
        report.activation_bytes = 4 * math.prod(out)
        result.blocks.append(report)
        if isinstance(bid, str) and bid:
            saved[bid] = (out, rf, jump)
        shape = out
        n_down += bt.downsampling > 1
        factor *= bt.downsampling
        n_embedded += bt.takes_embedding
    if spec.blocks:
        result.issues += _check_head(spec, result.blocks, size)
    if usable and spec.conditioning == "timestep" and spec.blocks and not n_embedded:
        result.issues.append(Issue("warning", None, "timestep conditioning has no effect: only residual "
                                                    "blocks take the embedding.",
                                   'add residual blocks, or set "conditioning" to "none".',
                                   {"set_top": {"conditioning": "none"}}))
    if size % factor and not any(x.code == NOT_DIVISIBLE for x in result.issues):
        power = f"2^{n_down} = " if factor == 2 ** n_down else ""
        result.issues.append(Issue("error", None, f"input size {size} is not divisible by {power}{factor} "
                                                  f"({n_down} downsamplings).",
                                   f"use a size divisible by {factor}; inference pads images "
                                   "automatically.", code=NOT_DIVISIBLE))
    result.total_params = sum(b.params or 0 for b in result.blocks)
    if emb:
        with torch.device("meta"):
            embedding = modules.TimestepEmbedding(spec.embedding_dim)
        result.total_params += count_params(embedding)
        result.total_flops += block_flops(embedding, (1, 1))
    result.total_flops += sum(b.flops or 0 for b in result.blocks)
    if result.total_params > cap("PARAMS"):
        result.issues.append(Issue("error", None, f"the network has {result.total_params:,} parameters, over the "
                                                  f"limit of {cap('PARAMS'):,} (DENOISE_STUDIO_MAX_PARAMS).",
                                   "use fewer channels, smaller kernels or fewer blocks (or raise the limit with "
                                   "DENOISE_STUDIO_MAX_PARAMS=N)."))
    result.activation_bytes = sum(b.activation_bytes for b in result.blocks)
    result.receptive_field = rf
    return result


def _issue(index: int, p) -> Issue:
    """A block type's Problem as an Issue of block `index`."""
    return Issue(p.level, index, p.message, p.fix, {"block": index, **p.patch} if p.patch else None, p.code)


def _check_out_shape(out, shape, index) -> tuple[list[Issue], tuple]:
    """Sizes a block may produce: at least 1×1, channels and pixels within their caps. Returns the
    problems and the shape to carry on with (the input's, past a cap, so numbers stay bounded)."""
    c, h, w = out
    if h < 1 or w < 1:
        return [Issue("error", index, f"the image has shrunk to {h}×{w}.",
                      "remove a downsampling, or choose a larger input size.")], out
    if c > cap("CHANNELS"):
        return [Issue("error", index, f"this point of the network has {c:,} channels, over the limit of "
                                      f"{cap('CHANNELS'):,} (DENOISE_STUDIO_MAX_CHANNELS).",
                      "use fewer channels, or merge with add instead of concat (or raise the limit with "
                      "DENOISE_STUDIO_MAX_CHANNELS=N).")], shape
    if h * w > cap("IMAGE_PIXELS"):
        return [Issue("error", index, f"the image has grown to {h:,}×{w:,} pixels, over the limit of "
                                      f"{cap('IMAGE_PIXELS'):,} (DENOISE_STUDIO_MAX_IMAGE_PIXELS).",
                      "use as many upsamplings as downsamplings, or a smaller input size.")], shape
    return [], out


def peak_inference_bytes(spec: ArchitectureSpec, analysis: Analysis) -> int:
    """What running the network on one analysis.size² input needs, roughly: fp32 weights, the
    skips kept for merges, and a block's input, output and one intermediate at the largest block."""
    kept = sum(r.activation_bytes for r, b in zip(analysis.blocks, spec.blocks, strict=True)
               if isinstance(b.get("id"), str))
    largest = max((r.activation_bytes for r in analysis.blocks), default=0)
    return 4 * analysis.total_params + kept + 3 * largest


def downsampling_factor(spec: ArchitectureSpec) -> int:
    """Input sizes must be multiples of this (inference pads to it): the product of every
    downsampling block's factor."""
    return math.prod(BLOCK_TYPES[t].downsampling for t in map(block_type_name, spec.blocks) if t is not None)
