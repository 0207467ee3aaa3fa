"""Checkpoints from strangers: nothing is unpickled, every bad file is one clear error."""
import errno
import json
import os
import pickle

import pytest
import torch

from denoise_studio.core.checkpoint import load_checkpoint, load_weights, resolve_checkpoint, save_checkpoint
from denoise_studio.core.errors import CheckpointError
from denoise_studio.core.network import build_network
from denoise_studio.core.spec import spec_from_dict
from tests.imagegen import TINY_SPEC

PWNED = []


class Payload:
    def __reduce__(self):
        return (PWNED.append, ("code ran",))


@pytest.fixture
def saved(tmp_path):
    net = build_network(spec_from_dict(TINY_SPEC))
    opt = torch.optim.AdamW(net.parameters())
    net(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, net, {"spec": TINY_SPEC, "step": 7}, opt)
    return path, net, opt


def test_round_trip_restores_weights_and_optimizer(saved):
    path, net, opt = saved
    ckpt = load_checkpoint(path)
    assert ckpt.step == 7 and ckpt.spec.name == "tiny"
    fresh = build_network(ckpt.spec)
    load_weights(fresh, ckpt)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values(), strict=True))
    opt2 = torch.optim.AdamW(fresh.parameters())
    opt2.load_state_dict(ckpt.optimizer_state)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickles_are_refused_and_never_run(tmp_path, protocol):
    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps(Payload(), protocol=protocol))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(p)
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(tmp_path / "evil.pt")
    assert PWNED == []


def test_truncated_tampered_and_foreign_files(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    cases = {"trunc": data[: len(data) // 2], "header": data[:8] + b"{garbage" + data[16:],
             "empty": b"", "text": b"hello there, not a checkpoint"}
    for name, content in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(content)
        with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint") as e:
            load_checkpoint(p)
        assert "\n" not in str(e.value)
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="not a Denoise Studio checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")


def test_weights_that_do_not_match_the_spec(saved, tmp_path):
    path, net, _ = saved
    other = dict(TINY_SPEC, blocks=[dict(b) for b in TINY_SPEC["blocks"]])
    other["blocks"][0]["out_channels"] = 8
    other["blocks"][1]["out_channels"] = 8
    p = tmp_path / "mismatch.safetensors"
    save_checkpoint(p, net, {"spec": other, "step": 1})
    words = r"do not match its spec \(blocks.0.conv.bias has shape \[16\], the spec needs \[8\]\)"
    with pytest.raises(CheckpointError, match=words) as e:
        load_checkpoint(p)   # checked against the spec's shapes before any network is built
    assert "\n" not in str(e.value)
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="do not match its spec"):   # load_weights still guards
        load_weights(build_network(spec_from_dict(other)), ckpt)


def test_a_failed_write_leaves_the_previous_checkpoint_intact(saved, monkeypatch):
    path, net, _ = saved
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, net, {"spec": TINY_SPEC, "step": 99})
    monkeypatch.undo()
    assert path.read_bytes() == before and load_checkpoint(path).step == 7
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_resolve_run_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such run folder"):
        resolve_checkpoint(tmp_path / "x")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.safetensors").write_bytes(b"")
    assert resolve_checkpoint(tmp_path).name == "last.safetensors"
    json.dumps({})


def test_a_header_length_starting_with_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    net = build_network(spec_from_dict(TINY_SPEC))
    path = tmp_path / "c.safetensors"
    for pad in range(300):
        save_checkpoint(path, net, {"spec": TINY_SPEC, "step": 1, "pad": "x" * pad})
        data = path.read_bytes()
        if data[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert load_checkpoint(path).step == 1


def test_raw_weights_beside_an_average_load_only_to_resume_and_only_whole(tmp_path):
    from safetensors.torch import load_file, save_file

    spec = spec_from_dict(TINY_SPEC)
    average, raw = build_network(spec), build_network(spec)
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, average, {"spec": TINY_SPEC, "step": 3}, train_model=raw)
    ckpt = load_checkpoint(path)
    used, resumed = build_network(spec), build_network(spec)
    load_weights(used, ckpt)
    load_weights(resumed, ckpt, raw=True)
    for (k, a), r, u, s in zip(average.state_dict().items(), raw.state_dict().values(), used.state_dict().values(),
                               resumed.state_dict().values(), strict=True):
        assert torch.equal(u, a) and torch.equal(s, r), k
    tensors = load_file(path)
    meta = {"denoise_studio": json.dumps({"spec": TINY_SPEC, "step": 3})}
    first = next(k for k in tensors if k.startswith("train."))
    partial = {k: v for k, v in tensors.items() if k != first}
    save_file(partial, tmp_path / "partial.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=f"missing {first[6:]}"):
        load_checkpoint(tmp_path / "partial.safetensors")
    wrong = {**tensors, first: torch.zeros(2, 2)}
    save_file(wrong, tmp_path / "wrong.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="do not match its spec"):
        load_checkpoint(tmp_path / "wrong.safetensors")
