"""The PyTorch building blocks every Denoise Studio network is made of.

This file imports nothing but torch, on purpose: `denoise-studio export --format python`
copies it verbatim into the exported file, so an exported network is plain PyTorch that
loads its weights with no Denoise Studio installed.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def make_activation(name):
    """relu, silu, gelu, leaky_relu, mish, tanh or none."""
    return {
        "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU,
        "mish": nn.Mish, "tanh": nn.Tanh, "none": nn.Identity,
    }[name]()


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel (as in ConvNeXt)."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def make_norm(name, channels):
    """group:N, batch, instance, layer or none."""
    if name.startswith("group:"):
        return nn.GroupNorm(int(name[6:]), channels)
    return {
        "batch": lambda: nn.BatchNorm2d(channels),
        "instance": lambda: nn.InstanceNorm2d(channels, affine=True),
        "layer": lambda: ChannelLayerNorm(channels),
        "none": nn.Identity,
    }[name]()


class ConvBlock(nn.Module):
    """Conv k×k with same padding, then norm, then activation."""

    def __init__(self, in_ch, out_ch, kernel=3, norm="group:8", act="silu"):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
        self.norm = make_norm(norm, out_ch)
        self.act = make_activation(act)

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    """conv-norm-act-conv-norm plus the input; a 1×1 projection when channels change.

    With timestep conditioning, the embedding is projected and added after the first
    activation, as DDPM U-Nets do.
    """

    takes_embedding = True   # Denoiser calls it (x, emb)

    def __init__(self, in_ch, out_ch, norm="group:8", act="silu", emb_dim=0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = make_norm(norm, out_ch)
        self.act = make_activation(act)
        self.emb = nn.Linear(emb_dim, out_ch) if emb_dim else None
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm2 = make_norm(norm, out_ch)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, emb=None):
        h = self.act(self.norm1(self.conv1(x)))
        if self.emb is not None and emb is not None:
            h = h + self.emb(emb)[:, :, None, None]
        h = self.norm2(self.conv2(h))
        return h + self.skip(x)


class Downsample(nn.Module):
    """Halve H and W: strided 4×4 conv, max pooling or average pooling."""

    def __init__(self, in_ch, out_ch, mode="conv"):
        super().__init__()
        if mode == "conv":
            self.op = nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1)
        elif mode == "maxpool":
            self.op = nn.MaxPool2d(2)
        else:
            self.op = nn.AvgPool2d(2)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W: transposed 4×4 conv, or nearest/bilinear resize (+ optional 3×3 conv)."""

    def __init__(self, in_ch, out_ch, mode="nearest", conv=True):
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            self.op = nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1)
        else:
            self.op = nn.Conv2d(in_ch, out_ch, 3, padding=1) if conv else nn.Identity()

    def forward(self, x):
        if self.mode != "transposed":
            x = F.interpolate(x, scale_factor=2, mode=self.mode)
        return self.op(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over all H×W positions, added to the input."""

    def __init__(self, channels, heads=1, norm="group:8"):
        super().__init__()
        self.heads = heads
        self.norm = make_norm(norm, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        y = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class Merge(nn.Module):
    """A U-Net skip: concatenate or add an earlier block's output."""

    merges_skip = True   # Denoiser calls it (x, output of the block named self.source)

    def __init__(self, source, mode="concat"):
        super().__init__()
        self.source = source
        self.mode = mode

    def forward(self, x, skip):
        return torch.cat([x, skip], 1) if self.mode == "concat" else x + skip


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar per sample (t, or σ), then a 2-layer MLP."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, 4 * dim))

    def forward(self, t):
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.sin(), args.cos()], 1))


class Denoiser(nn.Module):
    """Runs its blocks in order; blocks named in `keep` are saved for later merges. A block whose
    class says `merges_skip` is called (x, saved[block.source]); one that says `takes_embedding`
    is called (x, emb); any other, (x).

    conditioning: "none"; "noise_level" (σ in [0, 1] appended as an extra input channel,
    as FFDNet does); "timestep" (embedding added inside residual blocks).
    """

    def __init__(self, blocks, keep=(), conditioning="none", emb_dim=0):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.keep = dict(keep)  # block index (as str) -> id
        self.conditioning = conditioning
        self.time_embed = TimestepEmbedding(emb_dim) if conditioning == "timestep" else None

    def forward(self, x, cond=None):
        if self.conditioning == "noise_level":
            level = torch.zeros(x.shape[0], device=x.device) if cond is None else cond
            x = torch.cat([x, level.to(x.dtype).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], 1)
        emb = None
        if self.time_embed is not None:
            emb = self.time_embed(torch.zeros(x.shape[0], device=x.device) if cond is None else cond)
        saved = {}
        for i, block in enumerate(self.blocks):
            if getattr(block, "merges_skip", False):
                x = block(x, saved[block.source])
            elif getattr(block, "takes_embedding", False):
                x = block(x, emb)
            else:
                x = block(x)
            if str(i) in self.keep:
                saved[self.keep[str(i)]] = x
        return x
