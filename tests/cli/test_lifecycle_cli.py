"""CLI run lifecycle: Ctrl+C and SIGTERM keep the work, --steps on resume is the total, one
writer per folder, `watch` ends on a terminal event or a dead writer, damaged folders."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from denoise_studio.cli import main
from tests.imagegen import TINY_SPEC, write_folder

STEPS = 300
ARGS = ["--batch-size", "4", "--crop", "16", "--device", "cpu", "--sigma", "25", "--lr", "0.003",
        "--warmup", "2", "--eval-every", "100", "--checkpoint-every", "1000", "--seed", "4", "--threads", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("life")
    spec = root / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    data = write_folder(root / "data", n=5, size=40)
    return root, spec, data


def lines(run):
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]


def losses(run):
    return [x["loss"] for x in lines(run) if x["event"] == "step"]


def start_training(spec, data, out, steps=STEPS, extra=()):
    return subprocess.Popen([sys.executable, "-m", "denoise_studio", "train", str(spec), "--data", str(data),
                             "--out", str(out), "--steps", str(steps), *ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for_step(run, step, proc, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (run / "events.jsonl").exists() and any(x["event"] == "step" and x["step"] >= step
                                                   for x in lines(run)):
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    raise AssertionError("no step")


@pytest.fixture(scope="module")
def reference(setup):
    root, spec, data = setup
    out = root / "reference"
    assert main(["train", str(spec), "--data", str(data), "--out", str(out), "--steps", str(STEPS), *ARGS]) == 0
    return losses(out)


@pytest.mark.parametrize("sig,reason,code", [(signal.SIGINT, "interrupted", 130),
                                             (signal.SIGTERM, "terminated", 143)])
def test_a_signal_saves_the_step_reached_and_resume_continues_exactly(setup, reference, sig, reason, code, capsys):
    from denoise_studio.core.checkpoint import load_checkpoint
    root, spec, data = setup
    out = root / f"signalled-{reason}"
    proc = start_training(spec, data, out)
    wait_for_step(out, random.Random(sig).randint(2, 20), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"--resume --out {out}" in err
    events = lines(out)
    reached = max(x["step"] for x in events if x["event"] == "step")
    assert reached < STEPS
    assert events[-1]["event"] == "finished" and events[-1]["reason"] == reason and events[-1]["step"] == reached
    assert load_checkpoint(out / "checkpoints" / "last.safetensors").step == reached
    # Resume to the same total: the loss sequence is the uninterrupted run's.
    assert main(["train", "--resume", "--out", str(out)]) == 0
    assert losses(out) == pytest.approx(reference, rel=1e-5, abs=1e-7)
    assert lines(out)[-1]["reason"] == "steps"


def test_resume_steps_is_the_total_and_nothing_left_to_do_is_said(setup, capsys):
    from denoise_studio.core.checkpoint import load_checkpoint
    root, spec, data = setup
    out = root / "total"
    assert main(["train", str(spec), "--data", str(data), "--out", str(out), "--steps", "12", *ARGS]) == 0
    before = (out / "events.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already at step 12" in err and "--steps is the run's total" in err
    assert (out / "events.jsonl").read_bytes() == before
    assert main(["train", "--resume", "--out", str(out), "--steps", "20"]) == 0
    steps = [x["step"] for x in lines(out) if x["event"] == "step"]
    assert steps == list(range(1, 21))
    assert load_checkpoint(out / "checkpoints" / "last.safetensors").step == 20


def test_watch_exits_0_after_a_finished_run_and_3_soon_after_its_writer_is_killed(setup, capsys):
    root, spec, data = setup
    out = root / "watched"
    proc = start_training(spec, data, out, steps=10**6, extra=["--checkpoint-every", "5"])
    try:
        wait_for_step(out, 6, proc)
        watch = subprocess.Popen([sys.executable, "-m", "denoise_studio", "watch", str(out), "--interval", "0.2"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        time.sleep(1.0)
        assert watch.poll() is None          # a live writer: still following
    finally:
        proc.kill()
        proc.wait()
    killed = time.time()
    _, err = watch.communicate(timeout=30)
    took = time.time() - killed
    assert watch.returncode == 3 and took < 20, (took, err)   # not a timeout: 0.3 s on a quiet machine
    checkpoint_steps = [x["step"] for x in lines(out) if x["event"] == "checkpoint" and not x["best"]]
    assert err.strip().splitlines() == [f"denoise-studio: {out}: the writer is gone; last checkpoint at step "
                                        f"{checkpoint_steps[-1]}. Resume with `denoise-studio train --resume "
                                        f"--out {out}`."]
    # A finished run: watch reads it to the end and exits 0.
    capsys.readouterr()
    assert main(["watch", str(root / "reference"), "--interval", "0.05"]) == 0
    assert "finished at step 300 (all steps done)" in capsys.readouterr().out


def test_a_second_writer_is_refused_naming_the_first_and_changes_nothing(setup, capsys):
    root, spec, data = setup
    out = root / "busy"
    proc = start_training(spec, data, out, steps=10**6)
    try:
        wait_for_step(out, 2, proc)
        os.kill(proc.pid, signal.SIGSTOP)   # freeze the first writer so the folder holds still
        snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        capsys.readouterr()
        for argv in (["train", str(spec), "--data", str(data), "--out", str(out), "--steps", "5", *ARGS],
                     ["train", "--resume", "--out", str(out), "--steps", "10000000"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"is being written by process {proc.pid} on " in err, err
            assert "denoise_studio train" in err      # the holder's command, for the message
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def one_error(capsys, argv, *words):
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and "Traceback" not in cap.err and not cap.out.startswith("failed"), cap
    for w in words:
        assert w in cap.err, cap.err
    return cap.err


def test_bad_settings_and_data_are_refused_before_any_folder_is_made(setup, capsys, tmp_path):
    _, spec, data = setup
    base = ["train", str(spec), "--device", "cpu", "--steps", "3"]
    one_error(capsys, [*base, "--data", str(data), "--out", str(tmp_path / "a"), "--lr", "-1"], "lr is -1.0")
    one_error(capsys, [*base, "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "b")], "no such folder")
    (tmp_path / "file").write_text("mine")
    one_error(capsys, [*base, "--data", str(data), "--out", str(tmp_path / "file")], "is a file, not a folder")
    one_error(capsys, [*base, "--data", str(data), "--out", "/proc/ds-run"], "cannot create the run folder")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "checkpoints").write_text("")
    one_error(capsys, [*base, "--data", str(data), "--out", str(tmp_path / "c")], "checkpoints is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "file"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["checkpoints"]
    assert (tmp_path / "file").read_text() == "mine"


@pytest.fixture
def finished_run(setup, tmp_path):
    _, spec, data = setup
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(data), "--out", str(out), "--steps", "4", *ARGS]) == 0
    return out


@pytest.mark.parametrize("config,words", [
    (None, "has no config.json"), (b"{garbage", "is not valid JSON"), (b"[1, 2, 3]", "holds a list"),
    ({"sigma": 5}, "sigma is 5"), ({"lr": "fast"}, "lr is 'fast'"),
    ({"noise": "ddpm", "timesteps": 0}, "timesteps is 0"), ({"steps": "abc"}, "steps is 'abc'"),
    ({"crop": None}, "crop is None"), ({"batch_size": [8]}, "batch_size is [8]"), ({"seed": -1}, "seed is -1")])
def test_resume_refuses_a_damaged_config_in_one_line_and_changes_nothing(finished_run, capsys, config, words):
    path = finished_run / "config.json"
    if config is None:
        path.unlink()
    elif isinstance(config, bytes):
        path.write_bytes(config)
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    snapshot = {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()}
    one_error(capsys, ["train", "--resume", "--out", str(finished_run), "--steps", "8"], words)
    assert {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()} == snapshot


def test_watch_survives_damaged_events_lines_and_reports_a_folder_in_one_line(finished_run, capsys):
    from tests.core.test_lifecycle import damaged_lines
    events = finished_run / "events.jsonl"
    good = events.read_bytes()
    events.write_bytes(b"\n".join(damaged_lines()) + b"\n" + good)
    capsys.readouterr()
    assert main(["watch", str(finished_run), "--interval", "0.05"]) == 0
    cap = capsys.readouterr()
    assert "finished at step 4" in cap.out and f"skipped {len(damaged_lines())} damaged line(s)" in cap.err
    events.unlink()
    events.mkdir()
    one_error(capsys, ["watch", str(finished_run)], "events.jsonl is not a regular file")
    one_error(capsys, ["train", "--resume", "--out", str(finished_run), "--steps", "8"],
              "events.jsonl is not a regular file")
    one_error(capsys, ["watch", str(finished_run), "--interval", "nan"], "--interval")


@pytest.mark.parametrize("damage", ["missing", "fifo"])
def test_resume_without_its_last_checkpoint_is_refused_never_restarted(tmp_path, capsys, damage):
    """A resume whose last checkpoint is gone (or is not a file) must not quietly start over at step 0."""
    from denoise_studio.cli import main
    run = tmp_path / "run"
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    base = ["--data", "shapes", "--crop", "16", "--batch-size", "2", "--device", "cpu"]
    assert main(["train", str(spec), "--out", str(run), "--steps", "3", "--checkpoint-every", "3", *base]) == 0
    last = run / "checkpoints" / "last.safetensors"
    last.unlink()
    if damage == "fifo":
        os.mkfifo(last)
    events = (run / "events.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "cannot be resumed without guessing" in err and len(err.strip().splitlines()) == 1
    assert (run / "events.jsonl").read_bytes() == events


def test_a_noise_free_sigma_range_is_refused(tmp_path, capsys):
    from denoise_studio.cli import main
    for sigma in ("0", "0-0"):
        assert main(["train", "unet-small", "--sigma", sigma, "--out", str(tmp_path / "r")]) == 2
        assert "above 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
