"""`denoise-studio train` unchanged under torchrun: 2 gloo processes on CPU compute what one
process with the same global batch computes; rank 0 alone writes; checkpoints cross over."""
import json
import os
import subprocess
import sys

import pytest

from tests.imagegen import TINY_SPEC, write_folder

ARGS = ["--amp", "off",  # exact equality of the losses is an fp32 property
        "--steps", "12", "--batch-size", "8", "--crop", "16", "--device", "cpu", "--sigma", "25",
        "--lr", "0.003", "--warmup", "2", "--eval-every", "6", "--checkpoint-every", "6", "--seed", "5"]


def losses(run):
    lines = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if x["event"] == "step"], lines


def train(cmd_prefix, spec, data, out, extra=(), env=None):
    res = subprocess.run([*cmd_prefix, "-m", "denoise_studio", "train", str(spec), "--data", str(data),
                          "--out", str(out), *ARGS, *extra], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    spec = root / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    data = write_folder(root / "data", n=5, size=40)
    single = root / "single"
    train([sys.executable], spec, data, single, ["--threads", "1"])
    double = root / "double"
    train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
          spec, data, double, ["--threads", "1"])
    return root, spec, data, single, double


def test_two_processes_match_one_with_the_same_global_batch(runs):
    _, _, _, single, double = runs
    one, _ = losses(single)
    two, lines = losses(double)
    assert len(one) == len(two) == 12
    assert two == pytest.approx(one, rel=1e-4, abs=1e-7)   # the same global batch, the same losses
    evals = lambda run: [x["psnr"] for x in losses(run)[1] if x["event"] == "eval"]  # noqa: E731
    assert evals(single) == pytest.approx(evals(double), abs=1e-3)
    started = next(x for x in lines if x["event"] == "started")
    assert started["world_size"] == 2
    cfg = json.loads((double / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["effective_batch_size"] == 8


def test_only_rank_zero_writes_and_checkpoints_cross_world_sizes(runs, capsys):
    root, spec, data, single, double = runs
    _, lines = losses(double)
    assert sum(1 for x in lines if x["event"] == "started") == 1     # one writer, not two
    # a 2-process checkpoint continues in one process, and the other way round
    from denoise_studio.cli import main
    assert main(["train", "--out", str(double), "--resume", "--steps", "14"]) == 0
    assert "resumed from step 12" in capsys.readouterr().out
    train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
          spec, data, single, ["--resume", "--steps", "14", "--threads", "1"])
    assert losses(single)[1][-1]["event"] == "finished" and losses(single)[1][-1]["step"] == 14
