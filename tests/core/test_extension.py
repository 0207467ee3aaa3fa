"""A block type and a noise process are each one class plus a decorator: this file registers a
toy 4× resampling block and a toy noise process here, and nowhere else, and sees them work in
analysis (shapes, downsampling factor, crop rounding, padding and tiling), building and running,
the builder's palette, checkpoints, denoising and `export --format python`."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from denoise_studio.core import blocks, noise
from denoise_studio.core.analysis import analyze, downsampling_factor
from denoise_studio.core.blocks import BLOCK_TYPES, BlockType, Param, Problem
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.export import export
from denoise_studio.core.inference import denoise, model_from_spec, plan_tiles
from denoise_studio.core.network import build_network, network_code
from denoise_studio.core.noise import NOISE_PROCESSES, NoiseProcess, make_noise
from denoise_studio.core.plan import round_crop
from denoise_studio.core.spec import ArchitectureSpec


class SpaceToDepth4(nn.Module):
    """4× pixel-unshuffle, then a 1×1 conv to out_ch."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(4)
        self.proj = nn.Conv2d(16 * in_ch, out_ch, 1)

    def forward(self, x):
        return self.proj(self.unshuffle(x))


class SpaceToDepth4Type(BlockType):
    name, label = "space_to_depth4", "Space to depth ×4"
    description = "Quarter height and width by moving 4×4 patches into channels."
    params = (Param("out_channels", "int", None, optional=True, help="output channels (empty: same as input)"),)
    scale = Fraction(1, 4)
    colour = "#123456"

    def out_shape(self, b, ctx):
        c, h, w = ctx.in_shape
        return (self.get(b, "out_channels") or c, h // 4, w // 4)

    def check(self, b, ctx):
        _, h, w = ctx.in_shape
        if h % 4 or w % 4:
            return [Problem(f"input of {h}×{w} is not divisible by 4.", "choose a size divisible by 4.",
                            code=blocks.NOT_DIVISIBLE)]
        return []

    def receptive(self, b, rf, jump, ctx):
        return rf + 3 * jump, jump * 4

    def constructor(self, b, ctx):
        return SpaceToDepth4, dict(in_ch=ctx.in_shape[0], out_ch=self.out_shape(b, ctx)[0])


@dataclass
class ScaledUniformNoise:
    """x = x₀ + σ·u with u uniform, of unit variance; σ fixed."""

    sigma: float = 20.0
    kind: ClassVar[str] = "toy_uniform"
    has_timesteps: ClassVar[bool] = False
    config_keys: ClassVar[frozenset[str]] = frozenset({"noise", "sigma"})

    @classmethod
    def from_dict(cls, d):
        return cls(float(d.get("sigma", 20.0)))

    @classmethod
    def config_problems(cls, d):
        s = d.get("sigma", 20.0)
        return [] if isinstance(s, (int, float)) and 0 < s <= 255 else [("noise.sigma", "a number from 0 to 255")]

    def to_dict(self):
        return {"noise": self.kind, "sigma": self.sigma}

    def sample_levels(self, n, generator):
        return torch.full((n,), self.sigma / 255.0)

    def level_for_sigma(self, sigma255):
        return sigma255 / 255.0

    def sigma_of(self, level):
        return level

    def prepare(self, y, level):
        return y

    def corrupt(self, x0, level, eps):
        n = level.view(-1, 1, 1, 1) * (torch.rand_like(x0) - 0.5) * 12 ** 0.5
        return x0 + n, n

    def reconstruct(self, x, pred, level):
        return x - pred

    def display_noisy(self, x, level):
        return x

    def added_noise(self, pred, level):
        return pred

    def condition(self, level, conditioning):
        return level if conditioning == "noise_level" else None


@pytest.fixture
def toys():
    blocks.register(SpaceToDepth4Type)
    noise.register_noise(ScaledUniformNoise)
    try:
        yield
    finally:
        BLOCK_TYPES.pop(SpaceToDepth4Type.name, None)
        NOISE_PROCESSES.pop(ScaledUniformNoise.kind, None)


def toy_spec() -> ArchitectureSpec:
    return ArchitectureSpec(name="toy", conditioning="noise_level", blocks=[
        {"type": "conv", "out_channels": 8, "norm": "group:4", "act": "silu"},
        {"type": "space_to_depth4", "out_channels": 16},
        {"type": "up", "mode": "nearest"},
        {"type": "up", "mode": "nearest"},
        {"type": "conv", "out_channels": 3, "norm": "none", "act": "none"},
    ])


def test_toy_block_in_analysis(toys):
    spec = toy_spec()
    assert downsampling_factor(spec) == 4
    a = analyze(spec, 32)
    assert a.valid, [str(i) for i in a.issues]
    assert [b.output_shape for b in a.blocks] == [(8, 32, 32), (16, 8, 8), (16, 16, 16), (16, 32, 32), (3, 32, 32)]
    assert a.blocks[1].params == 16 * 8 * 16 + 16
    bad = analyze(spec, 30)   # 30 is not a multiple of 4: one error, from the block, not a second network one
    assert [(i.block, i.code) for i in bad.errors if i.code] == [(1, blocks.NOT_DIVISIBLE)]
    assert round_crop(30, spec) == 28
    assert plan_tiles(model_from_spec(spec), 30, 29, tile=None).H % 4 == 0


def test_toy_block_builds_runs_and_exports(toys, tmp_path):
    spec = toy_spec()
    net = build_network(spec).eval()
    x, cond = torch.rand(2, 3, 16, 16), torch.full((2,), 0.1)
    with torch.no_grad():
        y = net(x, cond)
    assert y.shape == x.shape
    assert "class SpaceToDepth4" in network_code(spec)

    lm = model_from_spec(spec, {"noise": "toy_uniform", "sigma": 10})
    code, weights = export(lm, "python", tmp_path / "toy.py")
    module_spec = importlib.util.spec_from_file_location("toy_export", code)
    mod = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mod)
    standalone = mod.build_model().eval()
    standalone.load_state_dict(load_file(weights))
    with torch.no_grad():
        assert torch.allclose(standalone(x, cond), lm.model.cpu()(x, cond), atol=1e-6)


def test_toy_noise_process(toys):
    process = make_noise({"noise": "toy_uniform", "sigma": 12})
    assert isinstance(process, NoiseProcess) and process.sigma == 12.0
    x0 = torch.rand(2, 3, 8, 8)
    level = process.sample_levels(2, torch.Generator().manual_seed(0))
    x, target = process.corrupt(x0, level, torch.randn_like(x0))
    assert torch.allclose(process.reconstruct(x, target, level), x0, atol=1e-6)

    lm = model_from_spec(toy_spec(), {"noise": "toy_uniform", "sigma": 12})
    result = denoise(lm, np.random.default_rng(0).random((3, 20, 23)).astype(np.float32), 12.0)
    assert result.reconstruction.shape == (3, 20, 23)


def test_unknown_noise_names_the_valid_ones(toys):
    with pytest.raises(DenoiseError) as e:
        make_noise({"noise": "pink"})
    message = str(e.value)
    assert "\n" not in message and "'pink'" in message
    assert all(name in message for name in ("gaussian", "ddpm", "toy_uniform"))


def test_toy_block_in_the_builder_palette(toys, qtbot):
    pytest.importorskip("PySide6")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor

    from denoise_studio.gui.block_stack import BlockPalette, block_summary
    palette = BlockPalette()
    qtbot.addWidget(palette)
    items = [palette.item(i) for i in range(palette.count())]
    toy = [it for it in items if it.data(Qt.ItemDataRole.UserRole) == "space_to_depth4"]
    assert len(toy) == 1 and toy[0].text() == "+ Space to depth ×4"
    assert toy[0].foreground().color() == QColor("#123456")
    assert block_summary({"type": "space_to_depth4", "out_channels": 16}) == "→16"
