"""Validation reports every problem at once, with a fix, and never raises."""
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from denoise_studio.core.analysis import analyze
from denoise_studio.core.blocks import BLOCK_TYPES
from denoise_studio.core.errors import SpecInvalidError
from denoise_studio.core.network import build_network
from denoise_studio.core.presets import load_preset
from denoise_studio.core.spec import ArchitectureSpec, apply_patch

HEAD = {"type": "conv", "out_channels": 3, "norm": "none", "act": "none"}


def test_seed_simple_is_invalid_and_explains_groupnorm_8_3():
    a = analyze(load_preset("seed-simple"), 256)
    assert not a.valid
    messages = " ".join(i.message for i in a.errors)
    assert "GroupNorm(8, 3)" in messages and "PyTorch refuses" in messages
    assert "cannot predict negative noise" in messages
    assert all(i.block == 5 for i in a.errors)


def test_seed_simple_one_click_fix_gives_seed_simple_fixed():
    spec = load_preset("seed-simple")
    fixed = apply_patch(spec, analyze(spec).errors[0].patch)
    assert analyze(fixed).valid
    assert fixed.blocks == load_preset("seed-simple-fixed").blocks


def test_build_of_an_invalid_spec_raises_a_user_error_not_a_torch_traceback():
    try:
        build_network(load_preset("seed-simple"))
    except SpecInvalidError as e:
        assert "GroupNorm(8, 3)" in str(e) and "Fix:" in str(e)
    else:
        raise AssertionError("seed-simple built")


def test_every_problem_reported_at_once():
    spec = ArchitectureSpec(unknown={"colr": 1}, blocks=[
        {"type": "conv", "out_channels": 12, "norm": "group:8", "act": "silu"},   # 8 ∤ 12
        {"type": "bogus"},
        {"type": "merge", "from": "nowhere"},
        {"type": "conv", "out_channels": 5, "kernel": 4, "speed": 3},            # even kernel, unknown field
        {"type": "conv", "out_channels": 3, "norm": "none", "act": "relu"},     # relu head
    ])
    a = analyze(spec)
    text = [str(i) for i in a.errors]
    assert len(a.errors) >= 6, text
    assert any("colr" in t for t in text)
    assert any("block 0" in t and "use group:6" in t for t in text)   # patch: largest divisor ≤ 8
    assert any("block 1" in t and "unknown block type" in t and "residual" in t for t in text)
    assert any("block 2" in t and "nowhere" in t for t in text)
    assert any("block 3" in t and "odd kernel" in t for t in text)
    assert any("block 3" in t and '"speed"' in t for t in text)
    assert any("block 4" in t and "negative noise" in t for t in text)
    assert all(i.fix for i in a.issues)


def test_merge_mismatches_and_size_divisibility():
    spec = ArchitectureSpec(blocks=[
        {"type": "conv", "out_channels": 8, "norm": "none", "act": "silu", "id": "a"},
        {"type": "down", "mode": "conv", "out_channels": 16},
        {"type": "merge", "from": "a", "mode": "add"},
        {"type": "up", "mode": "nearest", "out_channels": 8},
        HEAD,
    ])
    text = [str(i) for i in analyze(spec, 32).errors]
    assert any('skip "a" is 32×32' in t for t in text)
    assert any("add needs equal channels" in t for t in text)
    ok = ArchitectureSpec(blocks=[spec.blocks[0], spec.blocks[1], spec.blocks[3],
                                  {"type": "merge", "from": "a", "mode": "add"}, HEAD])
    assert analyze(ok, 32).valid
    assert any("not divisible by 2" in str(i) for i in analyze(ok, 33).errors)


def test_output_channels_and_size_problems_have_patches():
    spec = ArchitectureSpec(blocks=[{"type": "conv", "out_channels": 8, "norm": "none", "act": "none"}])
    err = analyze(spec).errors[0]
    assert "outputs 8 channels" in err.message
    assert analyze(apply_patch(spec, err.patch)).valid
    spec = ArchitectureSpec(blocks=[{"type": "down", "mode": "maxpool"}, HEAD])
    assert any("outputs 32×32 from a 64×64" in i.message for i in analyze(spec).errors)


def test_head_norm_and_tanh_are_warnings():
    spec = ArchitectureSpec(blocks=[{"type": "conv", "out_channels": 3, "norm": "group:3", "act": "tanh"}])
    a = analyze(spec)
    assert a.valid
    assert {("tanh" in w.message) or ("normalised" in w.message) for w in a.warnings} == {True}
    assert len(a.warnings) == 2


# --- property: anything valid builds and maps (1,3,H,W) -> (1,3,H,W); anything else gets messages ---

def block_strategy():
    channels = st.one_of(st.none(), st.integers(1, 12), st.just(0), st.just("x"))
    norm = st.sampled_from(["group:1", "group:2", "group:4", "group:3", "batch", "instance", "layer",
                            "none", "group:0", "bogus"])
    act = st.sampled_from(["relu", "silu", "gelu", "leaky_relu", "mish", "tanh", "none", "swish"])
    return st.one_of(
        st.fixed_dictionaries({"type": st.just("conv"), "out_channels": channels, "norm": norm, "act": act,
                               "kernel": st.sampled_from([1, 3, 5, 2])}),
        st.fixed_dictionaries({"type": st.just("residual"), "norm": norm, "act": act},
                              optional={"out_channels": channels}),
        st.fixed_dictionaries({"type": st.just("down"), "mode": st.sampled_from(["conv", "maxpool", "avgpool"])},
                              optional={"out_channels": channels}),
        st.fixed_dictionaries({"type": st.just("up"),
                               "mode": st.sampled_from(["transposed", "nearest", "bilinear", "cubic"])},
                              optional={"out_channels": channels, "conv": st.booleans()}),
        st.fixed_dictionaries({"type": st.just("attention"), "heads": st.integers(1, 3), "norm": norm}),
        st.fixed_dictionaries({"type": st.just("merge"), "from": st.sampled_from(["a", "b"]),
                               "mode": st.sampled_from(["concat", "add"])}),
        st.fixed_dictionaries({"type": st.sampled_from(["nope", 3, None])}),
    ).flatmap(lambda b: st.one_of(st.just(b), st.sampled_from(["a", "b"]).map(lambda i: {**b, "id": i})))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(block_strategy(), max_size=6), head=st.booleans(),
       conditioning=st.sampled_from(["none", "noise_level", "timestep", "weird"]), size=st.sampled_from([8, 12, 16]))
def test_any_spec_validates_without_exceptions_and_valid_ones_run(blocks, head, conditioning, size):
    spec = ArchitectureSpec(conditioning=conditioning, embedding_dim=8, blocks=blocks + ([HEAD] if head else []))
    a = analyze(spec, size)
    assert len(a.blocks) == len(spec.blocks)
    if not a.valid:
        assert all(i.message and i.fix for i in a.errors)
        return
    net = build_network(spec).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, size, size), torch.tensor([0.3]))
    assert y.shape == (1, 3, size, size)
    assert a.total_params == sum(p.numel() for p in net.parameters())


def test_block_registry_is_what_validation_knows():
    a = analyze(ArchitectureSpec(blocks=[{"type": "zzz"}]))
    assert all(name in a.errors[0].fix for name in BLOCK_TYPES)
