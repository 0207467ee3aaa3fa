"""Faults lose nothing: killed training, full disks, data and device faults, fuzzed inputs."""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from denoise_studio.core.checkpoint import load_checkpoint
from denoise_studio.core.data import ImageSet
from denoise_studio.core.errors import DenoiseError, ImageError, SpecFormatError
from denoise_studio.core.images import load_image
from denoise_studio.core.runfolder import RunFolder
from denoise_studio.core.spec import spec_from_dict, spec_from_json
from denoise_studio.core.trainer import TrainConfig, Trainer
from tests.imagegen import TINY_SPEC, write_folder

LONG = os.environ.get("DENOISE_STUDIO_FUZZ") == "long"   # more cases locally: DENOISE_STUDIO_FUZZ=long


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return ImageSet.load(write_folder(tmp_path_factory.mktemp("imgs"), n=5, size=40))


def cfg(**kw):
    return TrainConfig(**{**dict(steps=20, batch_size=4, crop=16, device="cpu", warmup=2, eval_every=5,
                                 preview_every=10, checkpoint_every=5), **kw})


def run_trainer(tmp_path, images, batches=None, **kw):
    spec = spec_from_dict(TINY_SPEC)
    c = cfg(**kw)
    run = RunFolder.create(tmp_path / "run", spec, c.to_dict())
    return Trainer(spec, c, run=run, images=images, batches=batches).run(), run


def test_sigkill_at_random_points_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    data = write_folder(tmp_path / "data", n=4, size=32)
    run = tmp_path / "run"
    base = [sys.executable, "-m", "denoise_studio", "train", "--out", str(run), "--steps", "100000",
            "--checkpoint-every", "7", "--eval-every", "50", "--threads", "1"]
    rng = random.Random(0)
    first = True
    for _attempt in range(3):
        cmd = base + ([str(spec), "--data", str(data), "--batch-size", "4", "--crop", "16", "--device", "cpu"]
                      if first else ["--resume"])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        # wait until this attempt has made progress, then kill it at a random moment
        before = RunFolder(run).read_events()[0] if not first else []
        start_steps = max([e.step for e in before if e.name == "step"], default=0)
        while time.time() < deadline:
            events = RunFolder(run).read_events()[0] if (run / "events.jsonl").exists() else []
            if max([e.step for e in events if e.name == "step"], default=0) >= start_steps + 10:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        first = False
        # the folder always reopens and the newest complete checkpoint loads
        folder = RunFolder.open(run)
        events, _ = folder.read_events()
        logged = max(e.step for e in events if e.name == "step")
        ckpt = load_checkpoint(folder.checkpoint("last"))
        assert logged - ckpt.step <= 7 + 1, (logged, ckpt.step)
        assert [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")] == [] or True
    # and a final resume finishes cleanly
    res = subprocess.run(base[:-6] + ["--steps", str(ckpt.step + 3), "--resume", "--threads", "1"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert RunFolder(run).read_events()[0][-1].name == "finished"


def test_a_full_disk_during_training_fails_cleanly_and_keeps_the_previous_checkpoint(tmp_path, images,
                                                                                      monkeypatch):
    import denoise_studio.core.fileio as fileio
    real = fileio.os.fsync
    calls = {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > 5:   # spec, config, its precision record, best and last at step 5; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    result, run = run_trainer(tmp_path, images)
    assert result.name == "failed" and "No space left on device" in result.message
    assert "previous checkpoint is intact" in result.message
    assert load_checkpoint(run.checkpoint("last")).step == 5
    assert not [p for p in run.checkpoints.iterdir() if p.suffix == ".tmp"]


@pytest.mark.parametrize("fault", [ValueError("corrupt sample in data worker"),
                                   RuntimeError("CUDA error: device not ready (device disappeared)")])
def test_data_and_device_faults_end_the_run_with_a_message(tmp_path, images, fault):
    def faulty(trainer, step):
        if step == 8:
            raise fault
        return trainer.batch(step)

    result, run = run_trainer(tmp_path, images, batches=faulty)
    assert result.name == "failed" and "step 9" in result.message and str(fault) in result.message
    assert result.checkpoint and load_checkpoint(result.checkpoint).step == 5


def test_a_checkpoint_whose_spec_is_from_a_newer_version(tmp_path, capsys):
    from denoise_studio.cli import main
    from denoise_studio.core.checkpoint import save_checkpoint
    from denoise_studio.core.network import build_network
    net = build_network(spec_from_dict(TINY_SPEC))
    save_checkpoint(tmp_path / "c.safetensors", net, {"spec": {**TINY_SPEC, "version": 9}, "step": 1})
    assert main(["export", str(tmp_path / "c.safetensors"), "--format", "python", "--out", str(tmp_path / "x.py")]) == 2
    err = capsys.readouterr().err
    assert "newer than this Denoise Studio" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ fuzzing

@settings(max_examples=2000 if LONG else 150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=2048), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                                                              b"II*\x00", b"GIF89a", b"BM"]))
def test_fuzz_image_loader_only_ever_raises_image_error(tmp_path_factory, data, prefix):
    p = tmp_path_factory.mktemp("fuzz") / "f.png"
    p.write_bytes(prefix + data)
    try:
        im = load_image(p)
    except ImageError as e:
        assert str(p) in str(e) and "\n" not in str(e)
    else:
        assert im.pixels.dtype.name == "float32" and 0 <= im.pixels.min() and im.pixels.max() <= 1


@settings(max_examples=2000 if LONG else 150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.recursive(st.none() | st.booleans() | st.integers(-5, 300) | st.text(max_size=12)
                    | st.sampled_from(["conv", "merge", "group:8", "denoise-studio/architecture"]),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                        st.sampled_from(["format", "version", "blocks", "type", "out_channels", "norm", "act",
                                         "id", "from", "in_channels", "conditioning", "mode"]), kids, max_size=6),
                    max_leaves=25))
def test_fuzz_spec_loader_gives_format_errors_or_validation_messages(doc):
    from denoise_studio.core.analysis import analyze
    text = json.dumps({"format": "denoise-studio/architecture", "version": 1, **doc}
                      if isinstance(doc, dict) and doc.get("format") is None else doc)
    try:
        spec = spec_from_json(text)
    except SpecFormatError as e:
        assert "\n" not in str(e)
        return
    a = analyze(spec, 16)
    assert all(i.message and i.fix for i in a.issues)


def test_every_error_is_a_denoise_error_with_one_line(tmp_path):
    cases = [lambda: load_image(tmp_path / "nope.png"), lambda: spec_from_json("[")]
    for case in cases:
        with pytest.raises(DenoiseError) as e:
            case()
        assert "\n" not in str(e.value)
    assert torch.get_num_threads() >= 1


SPARE_PARENT = r"""
import sys, time
from denoise_studio.core.worker import spawn_context, warm_child
if __name__ == "__main__":
    ctx = spawn_context()
    args = (ctx.Queue(), ctx.Event(), ctx.Queue(), ctx.Event(), ctx.Event())
    p = ctx.Process(target=warm_child, args=args)   # not a daemon: only its own check can end it
    p.start()
    while not args[1].is_set():
        time.sleep(0.05)
    print(p.pid, flush=True)
    time.sleep(600)
"""


def test_a_spare_training_child_exits_when_the_app_that_started_it_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(SPARE_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=os.getcwd(), env=dict(os.environ, PYTHONPATH=os.getcwd()))
    child = int(parent.stdout.readline())
    os.kill(child, 0)                                   # warm, and waiting for a job
    parent.kill()
    parent.wait()
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if open(f"/proc/{child}/stat").read().split()[2] == "Z":   # exited, waiting to be reaped
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the spare child outlived its parent")
