"""Every registered block × activation × norm builds and runs; inference agrees with the module."""
import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from denoise_studio.core.analysis import analyze
from denoise_studio.core.blocks import ACTIVATIONS, BLOCK_TYPES, NORMS, block_type
from denoise_studio.core.network import build_network
from denoise_studio.core.presets import load_preset, preset_names
from denoise_studio.core.spec import ArchitectureSpec

STEM = {"type": "conv", "out_channels": 8, "norm": "none", "act": "silu", "id": "stem"}
HEAD = {"type": "conv", "out_channels": 3, "norm": "none", "act": "none"}
NORMS_SMALL = tuple(n.replace("group:8", "group:4") for n in NORMS)


def network_around(block: dict) -> ArchitectureSpec:
    """stem → block (made shape-neutral) → head."""
    blocks = [STEM, block]
    if block["type"] == "down":
        blocks.append({"type": "up", "mode": "nearest", "out_channels": 8})
    if block["type"] == "up":
        blocks.append({"type": "down", "mode": "avgpool"})
    return ArchitectureSpec(blocks=blocks + [HEAD])


def block_variants():
    for name, bt in BLOCK_TYPES.items():
        choice_params = [p for p in bt.params if p.kind == "choice"]
        modes = [dict(zip([p.name for p in choice_params], combo, strict=True))
                 for combo in itertools.product(*[p.choices for p in choice_params])] or [{}]
        acts = ACTIVATIONS if any(p.kind == "act" for p in bt.params) else (None,)
        norms = NORMS_SMALL if any(p.kind == "norm" for p in bt.params) else (None,)
        for mode, act, norm in itertools.product(modes, acts, norms):
            b = {**bt.defaults(), **mode}
            if name == "merge":
                b["from"] = "stem"
            if act:
                b["act"] = act
            if norm:
                b["norm"] = norm
            yield pytest.param(b, id="-".join(str(v) for v in b.values()))


@pytest.mark.parametrize("block", list(block_variants()))
def test_block_builds_runs_and_matches_inference(block):
    spec = network_around(block)
    a = analyze(spec, 16)
    assert a.valid, [str(i) for i in a.errors]
    net = build_network(spec)
    x = torch.randn(2, 3, 16, 16)
    assert net(x).shape == x.shape
    assert a.total_params == sum(p.numel() for p in net.parameters())
    # Per block: the inferred output shape equals what the module really produces.
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for m in net.blocks]
    net(x[:1])
    for h in hooks:
        h.remove()
    assert shapes == [r.output_shape for r in a.blocks]


def test_registry_lists_valid_names_on_unknown_type():
    with pytest.raises(KeyError, match="valid types are: conv, residual"):
        block_type("convolution")


@pytest.mark.parametrize("name", [n for n in preset_names() if n != "seed-simple"])
def test_presets_flops_agree_with_torch_flop_counter(name):
    spec = load_preset(name)
    a = analyze(spec, 32)
    net = build_network(spec).eval()
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(1, 3, 32, 32), torch.tensor([5.0]))
    assert a.total_flops == counter.get_total_flops()


def test_receptive_field_of_a_plain_stack():
    spec = ArchitectureSpec(blocks=[{"type": "conv", "out_channels": 8, "norm": "none", "act": "relu"}] * 4
                            + [HEAD])
    assert analyze(spec, 32).receptive_field == 11  # five 3×3 convs: 1 + 5·2
    ones = torch.zeros(1, 3, 33, 33, requires_grad=True)
    net = build_network(spec)
    net(ones)[0, 0, 16, 16].backward()
    touched = (ones.grad.abs().sum((0, 1)) > 0).nonzero()
    assert touched[:, 0].max() - touched[:, 0].min() + 1 == 11


def test_conditioned_networks_use_their_condition():
    torch.manual_seed(0)
    for name in ("unet",):
        net = build_network(load_preset(name))
        x = torch.randn(1, 3, 32, 32)
        assert not torch.allclose(net(x, torch.tensor([1.0])), net(x, torch.tensor([900.0])))
    spec = ArchitectureSpec(conditioning="noise_level", blocks=[STEM, HEAD])
    assert analyze(spec, 16).blocks[0].input_shape[0] == 4
    net = build_network(spec)
    x = torch.randn(1, 3, 16, 16)
    assert not torch.allclose(net(x, torch.tensor([0.1])), net(x, torch.tensor([0.5])))
