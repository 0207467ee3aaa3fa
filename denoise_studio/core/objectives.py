"""Training objectives: what the network is asked to reproduce from what it is shown.

- `supervised`: clean images are corrupted by the noise process; the network predicts the
  noise added (the default, and the best when clean images exist).
- `n2v` (Noise2Void, Krull et al. 2019): noisy images only. About one pixel in `cell`² is
  replaced by a random neighbour from its 5×5 window; the loss is taken on those pixels alone,
  against their original noisy values. The network never sees the pixel it must predict, so
  it cannot learn the identity and learns the signal (pixel-independent, zero-mean noise
  averages out of the target). Works with any network.
- `ne2ne` (Neighbor2Neighbor, Huang et al. 2021): noisy images only. From every 2×2 cell two
  adjacent pixels are drawn: one sub-image is the input, the other the target (their noise is
  independent, their signal nearly equal), plus the paper's regulariser that makes the
  sub-sampled full-resolution output agree with the sub-images' outputs.

Each objective turns a batch into `Pairs` (network input, target, weights) and scores the
network's output on them; the trainer uses every objective the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F

from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.noise import NoiseProcess


@dataclass
class Pairs:
    x: torch.Tensor                      # the network input (B, C, h, w)
    target: torch.Tensor                 # what the output is compared with, same shape
    weight: torch.Tensor | None = None   # (B, 1, h, w): 1 where the loss counts; None: everywhere
    source: torch.Tensor | None = None   # ne2ne: the full-resolution noisy images
    index: tuple[torch.Tensor, torch.Tensor] | None = None   # ne2ne: the two pixels picked in each cell


Reconstruct = Callable[[torch.Tensor], torch.Tensor]   # noisy images → the network's clean estimate (no grad)


class Objective(Protocol):
    name: ClassVar[str]
    self_supervised: ClassVar[bool]   # trains on noisy observations, never on clean images
    crop_multiple: ClassVar[int]      # the network input is crop / crop_multiple

    def pairs(self, images: torch.Tensor, noise: NoiseProcess, level: torch.Tensor, eps: torch.Tensor,
              gen: torch.Generator) -> Pairs:
        """images: clean for supervised, the noisy observations otherwise."""
        ...

    def loss(self, pairs: Pairs, pred: torch.Tensor, noise: NoiseProcess, level: torch.Tensor,
             reconstruct: Reconstruct) -> torch.Tensor:
        """Per-sample loss (B,) of the network output `pred` for `pairs.x`."""
        ...


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls):
    OBJECTIVES[cls.name] = cls
    return cls


def make_objective(name: str) -> Objective:
    cls = OBJECTIVES.get(name)
    if cls is None:
        raise DenoiseError(f"unknown objective {name!r}; use one of {', '.join(OBJECTIVES)}.")
    return cls()


def _per_sample(sq: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return sq.flatten(1).mean(1)
    w = weight.expand_as(sq)
    return (sq * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1)


@register_objective
class Supervised:
    name: ClassVar[str] = "supervised"
    self_supervised: ClassVar[bool] = False
    crop_multiple: ClassVar[int] = 1

    def pairs(self, images, noise, level, eps, gen):
        x, target = noise.corrupt(images, level, eps)
        return Pairs(x, target)

    def loss(self, pairs, pred, noise, level, reconstruct):
        return _per_sample((pred - pairs.target) ** 2, None)


# The 24 neighbours of a pixel in its 5×5 window (Noise2Void's replacement draws one at random).
_OFFSETS = torch.tensor([(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy, dx) != (0, 0)])


@register_objective
class Noise2Void:
    name: ClassVar[str] = "n2v"
    self_supervised: ClassVar[bool] = True
    crop_multiple: ClassVar[int] = 1

    def __init__(self, cell: int = 6):
        self.cell = cell   # one masked pixel per cell×cell square: 2.8 % of the pixels at 6

    def pairs(self, images, noise, level, eps, gen):
        b, c, h, w = images.shape
        if h < 5 or w < 5:
            raise DenoiseError(f"n2v needs crops of at least 5×5 pixels, not {h}×{w}; use a larger --crop.")
        ny, nx = -(-h // self.cell), -(-w // self.cell)
        # Stratified: one pixel per cell, so every sample has masked pixels spread over it.
        ys = (torch.arange(ny) * self.cell)[None, :, None] + torch.randint(0, self.cell, (b, ny, nx), generator=gen)
        xs = (torch.arange(nx) * self.cell)[None, None, :] + torch.randint(0, self.cell, (b, ny, nx), generator=gen)
        ys, xs = ys.clamp(max=h - 1), xs.clamp(max=w - 1)
        off = _OFFSETS[torch.randint(0, len(_OFFSETS), (b, ny, nx), generator=gen)]
        # A neighbour outside the image is taken on the other side instead: never the pixel itself.
        sy, sx = ys + off[..., 0], xs + off[..., 1]
        sy = torch.where((sy < 0) | (sy >= h), ys - off[..., 0], sy)
        sx = torch.where((sx < 0) | (sx >= w), xs - off[..., 1], sx)
        bi = torch.arange(b)[:, None, None].expand_as(ys)
        dev = images.device
        bi, ys, xs, sy, sx = (t.to(dev) for t in (bi, ys, xs, sy, sx))
        x = images.clone()
        x.permute(0, 2, 3, 1)[bi, ys, xs] = images.permute(0, 2, 3, 1)[bi, sy, sx]
        weight = torch.zeros(b, 1, h, w, device=dev, dtype=images.dtype)
        weight[bi, 0, ys, xs] = 1.0
        return Pairs(noise.prepare(x, level), images, weight)

    def loss(self, pairs, pred, noise, level, reconstruct):
        return _per_sample((noise.reconstruct(pairs.x, pred, level) - pairs.target) ** 2, pairs.weight)


# In a 2×2 cell numbered 0 1 / 2 3, the two pixels adjacent to each.
_ADJACENT = torch.tensor([[1, 2], [0, 3], [0, 3], [1, 2]])


def subsample(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H/2, W/2): from each 2×2 cell the pixel numbered index (B, H/2, W/2)."""
    b, c, h, w = images.shape
    cells = F.pixel_unshuffle(images, 2).view(b, c, 4, h // 2, w // 2)
    return cells.gather(2, index[:, None, None].expand(b, c, 1, h // 2, w // 2)).squeeze(2)


@register_objective
class Neighbor2Neighbor:
    name: ClassVar[str] = "ne2ne"
    self_supervised: ClassVar[bool] = True
    crop_multiple: ClassVar[int] = 2

    def __init__(self, gamma: float = 1.0):
        self.gamma = gamma   # the regulariser's weight (the paper: 1–2)

    def pairs(self, images, noise, level, eps, gen):
        b, _, h, w = images.shape
        if h % 2 or w % 2:
            raise DenoiseError(f"ne2ne needs crops of even size, not {h}×{w}; use an even --crop.")
        first = torch.randint(0, 4, (b, h // 2, w // 2), generator=gen)
        second = _ADJACENT[first, torch.randint(0, 2, (b, h // 2, w // 2), generator=gen)]
        first, second = first.to(images.device), second.to(images.device)
        return Pairs(noise.prepare(subsample(images, first), level), subsample(images, second),
                     source=images, index=(first, second))

    def loss(self, pairs, pred, noise, level, reconstruct):
        rec = noise.reconstruct(pairs.x, pred, level)
        out = _per_sample((rec - pairs.target) ** 2, None)
        if self.gamma and pairs.source is not None and pairs.index is not None:
            with torch.no_grad():
                full = reconstruct(pairs.source)
                gap = subsample(full, pairs.index[0]) - subsample(full, pairs.index[1])
            out = out + self.gamma * _per_sample((rec - pairs.target - gap) ** 2, None)
        return out


def objective_problems(spec, objective: str, crop: int) -> list[str]:
    """What an objective needs of a network, one sentence each (the builder's problems list, and
    TrainConfig.problems): n2v predicts a pixel from its neighbours only, so the network must see
    past the pixel; ne2ne trains on half-size sub-images, so the crop halves."""
    from denoise_studio.core.analysis import analyze, downsampling_factor
    obj = make_objective(objective)
    if not obj.self_supervised:
        return []
    out = []
    rf = analyze(spec, max(crop // obj.crop_multiple, downsampling_factor(spec))).receptive_field
    if rf < 3:
        out.append(f"{objective} predicts each pixel from its neighbours, but this network sees only "
                   f"{rf:g}×{rf:g} pixel(s) (1×1 layers): give it at least one 3×3 convolution.")
    if objective == "ne2ne" and crop // 2 < downsampling_factor(spec):
        out.append(f"ne2ne trains on crop/2 = {crop // 2} pixel sub-images, smaller than the network's "
                   f"downsampling factor {downsampling_factor(spec)}: use a crop of at least "
                   f"{2 * downsampling_factor(spec)}.")
    return out
