"""The block registry: each block type declares its parameters, its shape rule, its checks,
its receptive-field rule and the `modules.py` class that implements it.

A new block type is one class plus `@register` (in any module that is imported). The GUI's
palette, stack and properties editor, validation, shape inference, inference padding and
tiling, and the code generator all read from this registry: what a block *is* (how it
resamples, whether it takes the timestep embedding, whether it merges a skip, whether it sees
the whole image) is declared here as traits, and nothing outside the registry compares a
type name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from denoise_studio.core.limits import cap

ACTIVATIONS = ("relu", "silu", "gelu", "leaky_relu", "mish", "tanh", "none")
NORMS = ("group:8", "batch", "instance", "layer", "none")  # group:N takes any N
# The smallest value each activation can output: an output head must reach negative noise.
ACTIVATION_MIN = {"relu": 0.0, "silu": -0.278, "gelu": -0.170, "mish": -0.309, "leaky_relu": None,
                  "tanh": -1.0, "none": None}


def _modules():
    """core.modules (torch), imported when a block is first built: the registry itself, and with it
    the app's builder, loads without torch."""
    from denoise_studio.core import modules
    return modules


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
    code: str = ""              # what kind of problem, for code that must recognise one (never the wording)


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

    # Traits: what the rest of the program needs to know about a block, without its name.
    scale: Fraction = Fraction(1)   # output H, W over input H, W: 1/2 halves (a downsampling), 2 doubles
    takes_embedding = False         # its module is called (x, emb) and receives the timestep embedding
    merges_skip = False             # its module is called (x, skip) with the output of the block named
    #                                 by its "source" param (any block with an "id" is a skip source)
    global_field = False            # sees every position: receptive field is the whole image, cost ∝ (H·W)²
    norm_on_output = False          # its norm (if any) is the last thing applied to its output
    colour = "#888888"              # the GUI's colour for this type (palette, stack, skip brackets)

    @property
    def downsampling(self) -> int:
        """How many times smaller the block makes the image (1 when it does not downsample)."""
        return int(1 / self.scale) if self.scale < 1 else 1

    @property
    def source_param(self) -> str | None:
        """The param naming the earlier block a merging block takes its skip from."""
        return next((p.name for p in self.params if p.kind == "source"), None)

    @property
    def has_act(self) -> bool:
        return any(p.name == "act" for p in self.params)

    def summary(self, b: dict, text=None) -> list[str]:
        """Short pieces describing a block's settings ("→64", "group:8", "silu"); `text` renders a
        value the way the caller shows values (default: show)."""
        text = text or show
        names = {p.name for p in self.params}
        parts = []
        if "out_channels" in names and self.get(b, "out_channels") is not None and self.changes_channels(b):
            parts.append(f"→{text(self.get(b, 'out_channels'))}")
        for key in ("mode", "norm", "act"):
            if key in names:
                parts.append(text(self.get(b, key)))
        return parts

    def changes_channels(self, b: dict) -> bool:
        """Whether "out_channels" takes effect with the block's other settings."""
        return True

    def extra_bytes(self, b: dict, positions: float) -> int:
        """Memory beyond the block's output, at `positions` = H·W entering it (attention's scores)."""
        return 0

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


NOT_DIVISIBLE = "size_not_divisible"   # Problem/Issue code: a size a downsampling cannot divide
GROUPS_DO_NOT_DIVIDE = "groups_do_not_divide"   # GroupNorm groups that do not divide the channels

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
    norm_on_output = True
    colour = "#4c78a8"

    def out_shape(self, b, ctx):
        return (self.get(b, "out_channels"), *ctx.in_shape[1:])

    def norm_channels(self, b, ctx):
        return self.get(b, "out_channels")

    def summary(self, b, text=None):
        parts = super().summary(b, text)
        if self.get(b, "kernel") != 3:
            k = (text or show)(self.get(b, "kernel"))
            parts.insert(0 if self.get(b, "out_channels") is None else 1, f"{k}×{k}")
        return parts

    def receptive(self, b, rf, jump, ctx):
        return rf + (self.get(b, "kernel") - 1) * jump, jump

    def constructor(self, b, ctx):
        return _modules().ConvBlock, dict(in_ch=ctx.in_shape[0], out_ch=self.get(b, "out_channels"),
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
    takes_embedding = True
    colour = "#54a24b"

    def out_shape(self, b, ctx):
        return (_out_channels(self, b, ctx), *ctx.in_shape[1:])

    def norm_channels(self, b, ctx):
        return _out_channels(self, b, ctx)

    def receptive(self, b, rf, jump, ctx):
        return rf + 4 * jump, jump

    def constructor(self, b, ctx):
        return _modules().ResidualBlock, dict(in_ch=ctx.in_shape[0], out_ch=_out_channels(self, b, ctx),
                                           norm=self.get(b, "norm"), act=self.get(b, "act"),
                                           emb_dim=ctx.emb_dim)


@register
class DownBlockType(BlockType):
    name, label = "down", "Downsample"
    description = "Halve height and width: strided 4×4 conv, max pooling or average pooling."
    params = (Param("mode", "choice", "conv", choices=("conv", "maxpool", "avgpool")),
              Param("out_channels", "int", None, optional=True,
                    help="output channels of the strided conv (empty: same as input)"))
    scale = Fraction(1, 2)
    colour = "#e45756"

    def changes_channels(self, b):
        return self.get(b, "mode") == "conv"

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
                                    "inference pads images automatically.", code=NOT_DIVISIBLE))
        return problems

    def receptive(self, b, rf, jump, ctx):
        k = 4 if self.get(b, "mode") == "conv" else 2
        return rf + (k - 1) * jump, jump * 2

    def constructor(self, b, ctx):
        c = self.out_shape(b, ctx)[0]
        return _modules().Downsample, dict(in_ch=ctx.in_shape[0], out_ch=c, mode=self.get(b, "mode"))


@register
class UpBlockType(BlockType):
    name, label = "up", "Upsample"
    description = "Double height and width: transposed 4×4 conv, or nearest/bilinear resize + 3×3 conv."
    params = (Param("mode", "choice", "nearest", choices=("transposed", "nearest", "bilinear")),
              Param("out_channels", "int", None, optional=True, help="output channels (empty: same as input)"),
              Param("conv", "bool", True, help="3×3 conv after a resize (off: plain resize)"))
    scale = Fraction(2)
    colour = "#f58518"

    def summary(self, b, text=None):
        return super().summary(b, text) + ([] if self._has_conv(b) else ["no conv"])

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
        return _modules().Upsample, dict(in_ch=ctx.in_shape[0], out_ch=self.out_shape(b, ctx)[0],
                                      mode=self.get(b, "mode"), conv=bool(self._has_conv(b)))


@register
class AttentionBlockType(BlockType):
    name, label = "attention", "Self-attention"
    description = "Multi-head self-attention over all H×W positions, added to the input (cost grows as (H·W)²)."
    params = (Param("heads", "int", 1, help="attention heads (must divide the channels)"),
              Param("norm", "norm", "group:8"))
    global_field = True
    colour = "#b279a2"

    def norm_channels(self, b, ctx):
        return ctx.in_shape[0]

    def summary(self, b, text=None):
        return super().summary(b, text) + [f"{(text or show)(self.get(b, 'heads'))} head(s)"]

    def extra_bytes(self, b, positions):
        heads = b.get("heads", 1) if isinstance(b.get("heads", 1), int) else 1
        return int(2 * 4 * max(heads, 1) * positions * positions)   # scores and their softmax

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
        return _modules().SelfAttention, dict(channels=ctx.in_shape[0], heads=self.get(b, "heads"),
                                           norm=self.get(b, "norm"))


@register
class MergeBlockType(BlockType):
    name, label = "merge", "Skip merge"
    description = "U-Net skip: concatenate or add the output of an earlier block that has an id."
    params = (Param("from", "source", None, help="id of the earlier block"),
              Param("mode", "choice", "concat", choices=("concat", "add")))
    merges_skip = True
    colour = "#72b7b2"

    def summary(self, b, text=None):
        return [f"from {(text or show)(b.get('from'))}", *super().summary(b, text)]

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
        return _modules().Merge, dict(source=b["from"], mode=self.get(b, "mode"))
