"""Hostile checkpoints, by class: tampered metadata field by field, weights of the wrong dtype,
shape or value, special files, oversized headers, and cost bombs under a 2 GiB address-space cap.
Each is one CheckpointError line (or LimitError for a cost), raised before a network is built."""
import json
import os
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from denoise_studio.core.checkpoint import META_KEY, load_checkpoint, save_checkpoint
from denoise_studio.core.errors import CheckpointError
from denoise_studio.core.network import build_network
from denoise_studio.core.spec import spec_from_dict
from tests.imagegen import TINY_SPEC

DAMAGED = "the file was damaged or made by something other than Denoise Studio"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    net = build_network(spec_from_dict(TINY_SPEC))
    opt = torch.optim.AdamW(net.parameters())
    net(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()
    path = tmp_path_factory.mktemp("ck") / "good.safetensors"
    save_checkpoint(path, net, {"spec": TINY_SPEC, "step": 7, "config": {"crop": 16},
                                "noise": {"noise": "ddpm", "schedule": "cosine", "timesteps": 100}}, opt)
    return path.read_bytes()


def rewrite(data: bytes, meta=None, tensors=None) -> bytes:
    """The checkpoint with its metadata and/or tensors changed by the given functions."""
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    m = json.loads(header["__metadata__"][META_KEY])
    t = dict(st_load(data))
    if meta:
        m = meta(m)
    if tensors:
        t = tensors(t)
    return st_save(t, metadata={META_KEY: json.dumps(m)})


def load_bytes(tmp_path, data: bytes):
    p = tmp_path / "c.safetensors"
    p.write_bytes(data)
    return load_checkpoint(p)


def test_the_untampered_checkpoint_loads(good, tmp_path):
    ck = load_bytes(tmp_path, good)
    assert ck.step == 7 and ck.spec.name == "tiny" and ck.optimizer_state["param_groups"][0]["params"] == list(range(8))


def setter(path, value):
    def f(m):
        node = m
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return m
    return f


META_CASES = [
    (("spec",), [1, 2], "field spec is not"),
    (("spec",), "tiny", "field spec is not"),
    (("step",), -1, "field step is not"), (("step",), "abc", "field step is not"),
    (("step",), 1.5, "field step is not"), (("step",), True, "field step is not"),
    (("config",), [1], "field config is not"), (("history",), "x", "field history is not"),
    (("best_psnr",), "high", "field best_psnr is not"),
    (("lr_scale",), "half", "field lr_scale is not"), (("lr_scale",), 0, "field lr_scale is not"),
    (("lr_scale",), 2.0, "field lr_scale is not"), (("lr_scale",), None, "field lr_scale is not"),
    (("lr_scale",), float("nan"), "field lr_scale is not"),
    (("noise",), "gaussian", "field noise is not"), (("noise",), ["ddpm"], "field noise is not"),
    (("noise",), {"noise": "salt"}, "field noise is not"),
    (("noise", "timesteps"), 0, "noise.timesteps"), (("noise", "timesteps"), -5, "noise.timesteps"),
    (("noise", "timesteps"), 2 * 10**9, "noise.timesteps"), (("noise", "timesteps"), "100", "noise.timesteps"),
    (("noise", "schedule"), "weird", "noise.schedule"), (("noise", "schedule"), None, "noise.schedule"),
    (("noise",), {"noise": "gaussian", "sigma": "ab"}, "noise.sigma"),
    (("noise",), {"noise": "gaussian", "sigma": [1, 2, 3]}, "noise.sigma"),
    (("noise",), {"noise": "gaussian", "sigma": [50, 5]}, "noise.sigma"),
    (("noise",), {"noise": "gaussian", "sigma": [5, 1e9]}, "noise.sigma"),
    (("noise",), {"noise": "gaussian", "sigma": [5, None]}, "noise.sigma"),
    (("noise",), {"noise": "gaussian", "extra": 1}, "field noise is not"),
    (("optimizer",), [1, 2], "field optimizer is not"),
    (("optimizer", "param_groups"), {"a": 1}, "optimizer.param_groups"),
    (("optimizer", "param_groups"), [{"params": "all"}], "optimizer.param_groups"),
    (("optimizer", "scalars"), {"nodot": 1}, "optimizer.scalars"),
    (("optimizer", "scalars"), {"x.step": 1}, "optimizer.scalars"),
    (("optimizer", "scalars"), [], "optimizer.scalars"),
]


@pytest.mark.parametrize("path, value, words", META_CASES, ids=[f"{'.'.join(p)}={v!r:.20}" for p, v, _ in META_CASES])
def test_tampered_metadata_is_one_line_naming_the_field(good, tmp_path, path, value, words):
    with pytest.raises(CheckpointError, match=words) as e:
        load_bytes(tmp_path, rewrite(good, meta=setter(path, value)))
    assert DAMAGED in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("block_field, value", [("kernel", "abc"), ("out_channels", 10**400), ("type", ["conv"]),
                                                ("norm", "group:5"), ("kernel", 999)])
def test_an_invalid_stored_spec_is_one_line(good, tmp_path, block_field, value):
    def f(m):
        m["spec"]["blocks"][0][block_field] = value
        return m
    with pytest.raises(CheckpointError, match="its stored network is invalid .block 0: ") as e:
        load_bytes(tmp_path, rewrite(good, meta=f))
    assert "\n" not in str(e.value)


def tensor_edit(name, fn):
    def f(t):
        t = dict(t)
        out = fn(t.get(name))
        if out is None:
            t.pop(name, None)
        else:
            t[name] = out
        return t
    return f


W = "model.blocks.0.conv.weight"
TENSOR_CASES = [
    (W, lambda w: w.to(torch.int8), "blocks.0.conv.weight is I8; weights must be floating point"),
    (W, lambda w: torch.full_like(w, float("nan")), f"tensor {W} holds NaN or infinite values"),
    (W, lambda w: torch.full_like(w, float("inf")), "NaN or infinite"),
    (W, lambda w: w[:1], "blocks.0.conv.weight has shape [1, 3, 3, 3], the spec needs [16, 3, 3, 3]"),
    (W, lambda w: None, "missing blocks.0.conv.weight"),
    ("model.extra", lambda _: torch.zeros(1), "unexpected tensor 'model.extra'"),
    ("surprise", lambda _: torch.zeros(1), "unexpected tensor 'surprise'"),
    ("optim.x", lambda _: torch.zeros(1), "'optim.x' is not an optimizer entry"),
    ("optim.abc.exp_avg", lambda _: torch.zeros(1), "'optim.abc.exp_avg' is not an optimizer entry"),
    ("optim.0.exp_avg", lambda w: w.to(torch.int32), "optimizer tensor 'optim.0.exp_avg' is I32"),
    ("optim.0.exp_avg", lambda w: torch.full_like(w, float("nan")), "NaN or infinite"),
]


@pytest.mark.parametrize("name, fn, words", TENSOR_CASES, ids=[c[2][:40] for c in TENSOR_CASES])
def test_weights_are_checked_by_dtype_shape_name_and_value(good, tmp_path, name, fn, words):
    with pytest.raises(CheckpointError, match=words.replace("[", r"\[").replace("]", r"\]")) as e:
        load_bytes(tmp_path, rewrite(good, tensors=tensor_edit(name, fn)))
    assert "\n" not in str(e.value)


def test_a_header_over_the_metadata_cap_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setenv("DENOISE_STUDIO_MAX_METADATA_BYTES", "1000")
    body = b'{"__metadata__": {"denoise_studio": "' + b"x" * 5000 + b'"}}'
    with pytest.raises(CheckpointError, match="header claims 5,...-byte|over the 1,000-byte limit"):
        load_bytes(tmp_path, struct.pack("<Q", len(body)) + body)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder", "over_cap"])
def test_special_files_as_a_checkpoint_are_one_line(tmp_path, kind, monkeypatch):
    path = tmp_path / "c.safetensors"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "over_cap":
        monkeypatch.setenv("DENOISE_STUDIO_MAX_CHECKPOINT_BYTES", str(2**20))
        with open(path, "wb") as f:
            f.truncate(2 * 2**20)
    else:
        path = "/dev/zero"
    words = {"fifo": "not a regular file", "dev_zero": "not a regular file", "folder": "is a folder",
             "over_cap": "over the 1 MiB limit for a checkpoint"}[kind]
    with pytest.raises(CheckpointError, match=words) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


BOMB = r"""
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
from denoise_studio.cli import main
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = main(sys.argv[1:])
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(f"{code} {grown / 1024:.1f}")   # exit code, MiB the peak resident size grew while refusing
"""


def run_capped(tmp_path, *args, env=None):
    script = tmp_path / "capped.py"
    script.write_text(BOMB)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60,
                          cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})})


def bomb_spec(channels=2048, kernel=31):
    conv = {"type": "conv", "out_channels": channels, "kernel": kernel, "norm": "none", "act": "relu"}
    return {**TINY_SPEC, "blocks": [conv, conv, dict(conv, out_channels=3, act="none")]}


def test_a_tiny_checkpoint_asking_for_a_huge_network_is_refused_at_once_under_2_gib(tmp_path):
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(st_save({"model.x": torch.zeros(1)}, metadata={META_KEY: json.dumps({"spec": bomb_spec()})}))
    assert path.stat().st_size < 3000
    for env, words in (({}, "parameters, over the limit of 200,000,000"),
                       ({"DENOISE_STUDIO_MAX_PARAMS": str(10**12)}, "do not match its spec")):
        res = run_capped(tmp_path, "export", str(path), "--format", "python", "--out", str(tmp_path / "x.py"), env=env)
        err = res.stderr.strip()
        assert res.stdout.split()[0] == "2", (res.stdout, err)
        assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
        assert float(res.stdout.split()[1]) < 200   # refused from the header: 4 G parameters never allocated
    assert not (tmp_path / "x.py").exists()


MEMORY_BOMB = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.inference import model_from_spec
from denoise_studio.core.spec import spec_from_dict
try:
    model_from_spec(spec_from_dict(eval(sys.argv[1])))
except DenoiseError as e:
    print(type(e).__name__, e)
"""


def test_a_valid_network_too_big_for_memory_is_refused_before_allocation(tmp_path):
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_BOMB)
    # 1024² · 31² ≈ 1 G parameters (4 GiB): under the raised parameter cap, over the memory there is
    res = subprocess.run([sys.executable, str(script), repr(bomb_spec(1024, 31))], capture_output=True, text=True,
                         timeout=60, cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd(),
                                                           "DENOISE_STUDIO_MAX_PARAMS": str(10**12)})
    out = res.stdout.strip()
    assert out.startswith("LimitError ") and "would need about" in out and "available" in out, (out, res.stderr)
    assert len(out.splitlines()) == 1
