"""The block registry: each block type declares its parameters, its shape rule, its checks,
its receptive-field rule and the `modules.py` class that implements it.

A new block type is one class here plus `@register`. The GUI's palette and properties
editor, validation and the code generator all read from this registry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from denoise_studio.core import modules
from denoise_studio.core.limits import cap

ACTIVATIONS = ("relu", "silu", "gelu", "leaky_relu", "mish", "tanh", "none")
NORMS = ("group:8", "batch", "instance", "layer", "none")  # group:N takes any N
# The smallest value each activation can output: an output head must reach negative noise.
ACTIVATION_MIN = {"relu": 0.0, "silu": -0.278, "gelu": -0.170, "mish": -0.309, "leaky_relu": None,
                  "tanh": -1.0, "none": None}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str            # "int", "kernel", "choice", "norm", "act", "bool", "source"
    default: Any
    choices: tuple = ()
    optional: bool = False   # None (absent) allowed
    help: str = ""


@dataclass
class Problem:
    """A problem a block type found; analysis turns it into an Issue with the block index."""
    message: str
    fix: str
    patch: dict | None = None   # {"set": {...}} on this block, if a one-click fix exists
    level: str = "error"


@dataclass
class BlockContext:
    in_shape: tuple[int, int, int]      # (C, H, W) entering the block
    saved: dict = field(default_factory=dict)   # id -> (shape, receptive field, jump)
    emb_dim: int = 0                    # timestep embedding width given to residual blocks


def show(value, limit: int = 40) -> str:
    """A user's value inside a message: one short line, whatever JSON it is (a 400-digit
    integer, an 800-deep list, a string of control characters)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -10**15 < value < 10**15:
        try:
            return f"a {len(str(abs(value)))}-digit integer"
        except ValueError:   # over Python's int-to-str digit limit
            return "an integer of thousands of digits"
    try:
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
    except (RecursionError, ValueError):
        return f"a deeply nested {type(value).__name__}"
    # one line, whatever the value holds: newlines, NUL, U+2028 and every other non-printable escaped
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def block_type_name(block: dict) -> str | None:
    """The block's "type" when it is a registered name, else None (it may be any JSON value)."""
    t = block.get("type")
    return t if isinstance(t, str) and t in BLOCK_TYPES else None


def parse_norm(norm) -> int | None:
    """Group count of "group:N", else None. Raises ValueError for a malformed norm."""
    if not isinstance(norm, str):
        raise ValueError(norm)
    if norm.startswith("group:"):
        n = int(norm[6:])
        if n < 1:
            raise ValueError(norm)
        return n
    if norm not in NORMS:
        raise ValueError(norm)
    return None


def divisor_at_most(channels: int, n: int) -> int:
    return max(d for d in range(1, min(channels, n) + 1) if channels % d == 0)


class BlockType:
    name = ""
    label = ""
    description = ""
    params: tuple[Param, ...] = ()

    def defaults(self) -> dict:
        return {"type": self.name, **{p.name: p.default for p in self.params if p.default is not None}}

    def get(self, block: dict, name: str):
        p = next(p for p in self.params if p.name == name)
        return block.get(name, p.default)

    # Subclasses override these four.
    def out_shape(self, b: dict, ctx: BlockContext) -> tuple[int, int, int]:
        return ctx.in_shape

    def check(self, b: dict, ctx: BlockContext) -> list[Problem]:
        return []

    def receptive(self, b: dict, rf: float, jump: float, ctx: BlockContext) -> tuple[float, float]:
        return rf, jump

    def constructor(self, b: dict, ctx: BlockContext) -> tuple[type, dict]:
        raise NotImplementedError

    def norm_channels(self, b: dict, ctx: BlockContext) -> int | None:
        """Channels the block's norm sees, if it has a norm."""
        return None

    def check_fields(self, b: dict) -> list[Problem]:
        """Type, range and choice of every field, and unknown fields: every value a JSON document can
        hold gives a Problem here, so nothing later (shapes, modules) ever sees a wrong type."""
        problems = []
        known = {p.name: p for p in self.params}
        for key in b:
            if key in ("type", "id"):
                continue
            if key not in known:
                problems.append(Problem(
                    f"unknown field {show(key)} for a {self.name} block.",
                    f"remove it; valid fields are: {', '.join(['id', *known])}.", {"set": {key: None}}))
        if "id" in b and (not isinstance(b["id"], str) or not b["id"]):
            problems.append(Problem(f'"id" is {show(b["id"])}; it must be a non-empty string.',
                                    'name it, e.g. "enc1".', {"set": {"id": None}}))
        for p in self.params:
            v = b.get(p.name, p.default)
            if v is None:
                if not p.optional:
                    problems.append(Problem(f'"{p.name}" is required.', f'set "{p.name}".',
                                            {"set": {p.name: p.default}} if p.default is not None else None))
                continue
            bad = _field_problem(p, v)
            if bad:
                fixed = p.default
                problems.append(Problem(f'"{p.name}" is {show(v)}; it must be {bad}.',
                                        f'set "{p.name}" to {fixed!r}.' if fixed is not None else f'fix "{p.name}".',
                                        {"set": {p.name: fixed}}))
        return problems


def _field_problem(p: Param, v) -> str | None:
    """What `v` must be instead, or None when it is a valid value for `p`."""
    if p.kind in ("int", "kernel"):
        limit_name = "KERNEL" if p.kind == "kernel" else "CHANNELS"
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return "a positive integer"
        if p.kind == "kernel" and v % 2 == 0:
            return "an odd kernel size (same padding needs one)"
        if v > cap(limit_name):
            return f"at most {cap(limit_name):,} (the limit is raised with DENOISE_STUDIO_MAX_{limit_name}=N)"
        return None
    if p.kind == "bool":
        return None if isinstance(v, bool) else "true or false"
    if p.kind in ("choice", "act"):
        choices = p.choices or ACTIVATIONS
        return None if isinstance(v, str) and v in choices else "one of " + ", ".join(choices)
    if p.kind == "norm":
        try:
            parse_norm(v)
        except ValueError:
            return "group:N (N ≥ 1), batch, instance, layer or none"
        return None
    if p.kind == "source":
        return None if isinstance(v, str) and v else "the id of an earlier block"
    return None


BLOCK_TYPES: dict[str, BlockType] = {}


def register(cls):
    BLOCK_TYPES[cls.name] = cls()
    return cls


def block_type(name) -> BlockType:
    try:
        return BLOCK_TYPES[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown block type {show(name)}; valid types are: {', '.join(BLOCK_TYPES)}") from None


def _out_channels(bt: BlockType, b: dict, ctx: BlockContext) -> int:
    c = bt.get(b, "out_channels")
    return ctx.in_shape[0] if c is None else c


@register
class ConvBlockType(BlockType):
    name, label = "conv", "Conv block"
    description = "Conv k×k (same padding), then norm, then activation: the basic block."
    params = (Param("out_channels", "int", 64, help="output channels"),
              Param("kernel", "kernel", 3, help="kernel size (odd)"),
              Param("norm", "norm", "group:8"),
              Param("act", "act", "silu"))

    def out_shape(self, b, ctx):
        return (b.get("out_channels", 64), *ctx.in_shape[1:])

    def norm_channels(self, b, ctx):
        return b.get("out_channels", 64)

    def receptive(self, b, rf, jump, ctx):
        return rf + (self.get(b, "kernel") - 1) * jump, jump

    def constructor(self, b, ctx):
        return modules.ConvBlock, dict(in_ch=ctx.in_shape[0], out_ch=self.get(b, "out_channels"),
                                       kernel=self.get(b, "kernel"), norm=self.get(b, "norm"),
                                       act=self.get(b, "act"))


@register
class ResidualBlockType(BlockType):
    name, label = "residual", "Residual block"
    description = ("conv-norm-act-conv-norm plus the input (a 1×1 projection when channels change); "
                   "takes the timestep embedding when the network is conditioned on t.")
    params = (Param("out_channels", "int", None, optional=True, help="output channels (empty: same as input)"),
              Param("norm", "norm", "group:8"),
              Param("act", "act", "silu"))

    def out_shape(self, b, ctx):
        return (_out_channels(self, b, ctx), *ctx.in_shape[1:])

    def norm_channels(self, b, ctx):
        return _out_channels(self, b, ctx)

    def receptive(self, b, rf, jump, ctx):
        return rf + 4 * jump, jump

    def constructor(self, b, ctx):
        return modules.ResidualBlock, dict(in_ch=ctx.in_shape[0], out_ch=_out_channels(self, b, ctx),
                                           norm=self.get(b, "norm"), act=self.get(b, "act"),
                                           emb_dim=ctx.emb_dim)


@register
class DownBlockType(BlockType):
    name, label = "down", "Downsample"
    description = "Halve height and width: strided 4×4 conv, max pooling or average pooling."
    params = (Param("mode", "choice", "conv", choices=("conv", "maxpool", "avgpool")),
              Param("out_channels", "int", None, optional=True,
                    help="output channels of the strided conv (empty: same as input)"))

    def out_shape(self, b, ctx):
        c, h, w = ctx.in_shape
        if self.get(b, "mode") == "conv":
            c = _out_channels(self, b, ctx)
        return (c, h // 2, w // 2)

    def check(self, b, ctx):
        problems = []
        if self.get(b, "mode") != "conv" and b.get("out_channels") is not None:
            problems.append(Problem(f'"out_channels" has no effect with mode {self.get(b, "mode")} '
                                    "(pooling keeps the channels).",
                                    'remove "out_channels" or use mode "conv".',
                                    {"set": {"out_channels": None}}, "warning"))
        _, h, w = ctx.in_shape
        if h % 2 or w % 2:
            problems.append(Problem(f"input of {h}×{w} is not divisible by 2, so the size after "
                                    "upsampling will not match.",
                                    "choose an input size divisible by 2^(number of downsamplings); "
                                    "inference pads images automatically."))
        return problems

    def receptive(self, b, rf, jump, ctx):
        k = 4 if self.get(b, "mode") == "conv" else 2
        return rf + (k - 1) * jump, jump * 2

    def constructor(self, b, ctx):
        c = self.out_shape(b, ctx)[0]
        return modules.Downsample, dict(in_ch=ctx.in_shape[0], out_ch=c, mode=self.get(b, "mode"))


@register
class UpBlockType(BlockType):
    name, label = "up", "Upsample"
    description = "Double height and width: transposed 4×4 conv, or nearest/bilinear resize + 3×3 conv."
    params = (Param("mode", "choice", "nearest", choices=("transposed", "nearest", "bilinear")),
              Param("out_channels", "int", None, optional=True, help="output channels (empty: same as input)"),
              Param("conv", "bool", True, help="3×3 conv after a resize (off: plain resize)"))

    def _has_conv(self, b):
        return self.get(b, "mode") == "transposed" or self.get(b, "conv")

    def out_shape(self, b, ctx):
        c, h, w = ctx.in_shape
        if self._has_conv(b):
            c = _out_channels(self, b, ctx)
        return (c, h * 2, w * 2)

    def check(self, b, ctx):
        if not self._has_conv(b) and b.get("out_channels") not in (None, ctx.in_shape[0]):
            return [Problem('"out_channels" needs a conv: a plain resize keeps the channels.',
                            'set "conv" to true, or remove "out_channels".', {"set": {"conv": True}})]
        return []

    def receptive(self, b, rf, jump, ctx):
        jump_out = jump / 2
        if self.get(b, "mode") == "transposed":
            return rf + jump, jump_out
        rf = rf + (jump if self.get(b, "mode") == "bilinear" else 0)
        return rf + (2 * jump_out if self.get(b, "conv") else 0), jump_out

    def constructor(self, b, ctx):
        return modules.Upsample, dict(in_ch=ctx.in_shape[0], out_ch=self.out_shape(b, ctx)[0],
                                      mode=self.get(b, "mode"), conv=bool(self._has_conv(b)))


@register
class AttentionBlockType(BlockType):
    name, label = "attention", "Self-attention"
    description = "Multi-head self-attention over all H×W positions, added to the input (cost grows as (H·W)²)."
    params = (Param("heads", "int", 1, help="attention heads (must divide the channels)"),
              Param("norm", "norm", "group:8"))

    def norm_channels(self, b, ctx):
        return ctx.in_shape[0]

    def check(self, b, ctx):
        c, h, w = ctx.in_shape
        heads = self.get(b, "heads")
        problems = []
        if isinstance(heads, int) and c % heads:
            problems.append(Problem(f"{heads} heads do not divide {c} channels.",
                                    f"use {divisor_at_most(c, heads)} heads.",
                                    {"set": {"heads": divisor_at_most(c, heads)}}))
        if h * w > 64 * 64:
            problems.append(Problem(f"attention over {h}×{w} = {h * w} positions needs an "
                                    f"{h * w}×{h * w} matrix per head: slow and memory-hungry.",
                                    "move it after more downsamplings (at most 64×64).", None, "warning"))
        return problems

    def receptive(self, b, rf, jump, ctx):
        return float("inf"), jump

    def constructor(self, b, ctx):
        return modules.SelfAttention, dict(channels=ctx.in_shape[0], heads=self.get(b, "heads"),
                                           norm=self.get(b, "norm"))


@register
class MergeBlockType(BlockType):
    name, label = "merge", "Skip merge"
    description = "U-Net skip: concatenate or add the output of an earlier block that has an id."
    params = (Param("from", "source", None, help="id of the earlier block"),
              Param("mode", "choice", "concat", choices=("concat", "add")))

    def _source(self, b, ctx):
        return ctx.saved.get(b.get("from"))

    def out_shape(self, b, ctx):
        src = self._source(b, ctx)
        c, h, w = ctx.in_shape
        if src is not None and self.get(b, "mode") == "concat":
            c += src[0][0]
        return (c, h, w)

    def check(self, b, ctx):
        source = b.get("from")
        if not isinstance(source, str):
            return []  # check_fields reported it
        src = self._source(b, ctx)
        if src is None:
            ids = [show(k) for k in list(ctx.saved)[:8]]
            known = (", ".join(ids) + (f", … ({len(ctx.saved)} in all)" if len(ctx.saved) > 8 else "")) or "none yet"
            return [Problem(f"merges {show(source)}, but no earlier block has that id (earlier ids: {known}).",
                            'give the encoder block an "id" and name it in "from".')]
        (sc, sh, sw), c = src[0], ctx.in_shape[0]
        problems = []
        if (sh, sw) != ctx.in_shape[1:]:
            problems.append(Problem(f"skip {show(source)} is {sh}×{sw} but this point of the network is "
                                    f"{ctx.in_shape[1]}×{ctx.in_shape[2]}.",
                                    "merge after as many upsamplings as there were downsamplings since "
                                    f"{show(source)}."))
        if self.get(b, "mode") == "add" and sc != c:
            problems.append(Problem(f"add needs equal channels: skip {show(source)} has {sc}, this point has {c}.",
                                    'use mode "concat", or match the channels.', {"set": {"mode": "concat"}}))
        return problems

    def receptive(self, b, rf, jump, ctx):
        src = self._source(b, ctx)
        return (max(rf, src[1]), jump) if src is not None else (rf, jump)

    def constructor(self, b, ctx):
        return modules.Merge, dict(source=b["from"], mode=self.get(b, "mode"))
