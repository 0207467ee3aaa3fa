import json
import math

import pytest
import torch

from denoise_studio.core.checkpoint import load_checkpoint
from denoise_studio.core.data import ImageSet
from denoise_studio.core.runfolder import RunFolder, read_events
from denoise_studio.core.spec import spec_from_dict
from denoise_studio.core.trainer import Control, TrainConfig, Trainer
from tests.imagegen import TINY_SPEC, write_folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return ImageSet.load(write_folder(tmp_path_factory.mktemp("imgs"), n=6, size=48))


def config(**kw):
    base = dict(steps=30, batch_size=4, crop=24, lr=3e-3, device="cpu", warmup=5, eval_every=10,
                preview_every=15, checkpoint_every=10, sigma=(25.0, 25.0), seed=3)
    return TrainConfig(**{**base, **kw})


def train(tmp_path, images, name="run", resume=False, sinks=(), control=None, batches=None, **kw):
    spec = spec_from_dict(TINY_SPEC)
    cfg = config(**kw)
    run = RunFolder.create(tmp_path / name, spec, cfg.to_dict())
    events = []
    result = Trainer(spec, cfg, sinks=[events.append, *sinks], run=run, control=control, resume=resume,
                     images=images, batches=batches).run()
    return result, events, run


def test_training_learns_and_writes_a_complete_run_folder(tmp_path, images):
    result, events, run = train(tmp_path, images, steps=60)
    assert result.name == "finished" and result.reason == "steps"
    names = [e.name for e in events]
    assert names[0] == "started" and names[-1] == "finished"
    evals = [e for e in events if e.name == "eval"]
    assert evals[-1].psnr > evals[-1].noisy_psnr + 3      # it denoises, beyond the noisy input
    assert evals[-1].psnr > evals[0].psnr
    lines = [json.loads(x) for x in run.events_path.read_text().splitlines()]
    steps = [x for x in lines if x["event"] == "step"]
    assert len(steps) == 60 and {"loss", "lr", "images_per_s", "time", "step"} <= set(steps[0])
    assert any(x["grad_norms"] and len(x["grad_norms"]) == 3 for x in steps)
    assert all("psnr" in x for x in lines if x["event"] == "eval")
    assert run.checkpoint("last") and run.checkpoint("best")
    assert sorted(p.name for p in run.previews.iterdir())[0] == "step_0000015.png"
    ckpt = load_checkpoint(run.checkpoint("last"))
    assert ckpt.step == 60 and ckpt.meta["spec"]["name"] == "tiny" and ckpt.meta["config"]["steps"] == 60


def test_resume_is_exact(tmp_path, images):
    _, full, _ = train(tmp_path, images, name="full", steps=30)
    control = Control()
    stopper = lambda e: control.stop.set() if e.name == "step" and e.step == 20 else None  # noqa: E731
    first, part, run = train(tmp_path, images, name="part", steps=30, sinks=[stopper], control=control)
    assert first.reason == "stopped" and first.step == 20
    # The stop came after step 20's checkpoint; resume from it.
    _, rest, _ = train(tmp_path, images, name="part", steps=30, resume=True)
    losses = lambda evs: [e.loss for e in evs if e.name == "step"]  # noqa: E731
    assert rest[0].resumed_from == 20
    assert losses(part)[:20] + losses(rest) == pytest.approx(losses(full), rel=1e-5, abs=1e-7)
    whole, resumed = (load_checkpoint(r / "checkpoints" / "last.safetensors") for r in
                      (tmp_path / "full", tmp_path / "part"))
    for k in whole.model_state:   # the weights' average continues across the resume as well
        torch.testing.assert_close(resumed.model_state[k], whole.model_state[k], rtol=1e-4, atol=1e-6)


def test_nan_loss_stops_with_a_failed_event_and_keeps_the_last_good_checkpoint(tmp_path, images):
    def poisoned(trainer, step):
        pairs, level = trainer.batch(step)
        if step >= 12:
            pairs.x = pairs.x * float("nan")
        return pairs, level

    result, events, run = train(tmp_path, images, steps=30, batches=poisoned)
    assert result.name == "failed" and "step 13" in result.message and "nan" in result.message
    assert result.checkpoint and load_checkpoint(result.checkpoint).step == 10
    assert json.loads(run.events_path.read_text().splitlines()[-1])["event"] == "failed"


def test_out_of_memory_names_batch_and_crop(tmp_path, images):
    def oom(trainer, step):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
    result, _, _ = train(tmp_path, images, steps=5, batches=oom)
    assert result.name == "failed" and "batch size 4" in result.message and "crop 24" in result.message


def test_time_limit_ends_cleanly_and_the_lr_follows_it(tmp_path, images):
    result, events, run = train(tmp_path, images, steps=100000, time_limit=1.5)
    assert result.name == "finished" and result.reason == "time"
    lrs = [e.lr for e in events if e.name == "step"]
    assert lrs[-1] < 0.5 * max(lrs)   # the cosine decayed within the budget, not over 100000 steps
    assert load_checkpoint(run.checkpoint("last")).step == result.step


def test_pause_holds_training_until_resumed(tmp_path, images):
    import threading
    import time
    control = Control()
    seen = []

    def sink(e):
        if e.name == "step" and e.step == 3:
            control.pause.set()
            threading.Timer(0.5, control.pause.clear).start()
        seen.append((e.name, time.perf_counter()))

    result, _, _ = train(tmp_path, images, steps=6, sinks=[sink], control=control)
    steps = [t for n, t in seen if n == "step"]
    assert result.reason == "steps" and steps[3] - steps[2] >= 0.45


def test_bad_settings_fail_with_every_problem(tmp_path, images):
    result, _, _ = train(tmp_path, images, crop=0, lr=-1, noise="pink")
    assert result.name == "failed"
    assert "crop" in result.message and "lr" in result.message and "pink" in result.message


def test_unavailable_device_is_a_clear_failure(tmp_path, images):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result, _, _ = train(tmp_path, images, device="cuda")
    assert result.name == "failed" and "not available" in result.message and "--device cpu" in result.message


def test_events_file_reader_skips_a_torn_last_line(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_text('{"event": "step", "step": 1, "time": 0, "loss": 0.5}\n{"event": "st')
    events, offset = read_events(p)
    assert [e.step for e in events] == [1] and offset == p.read_text().index("\n") + 1
    with open(p, "a") as f:
        f.write('ep", "step": 2, "time": 0, "loss": 0.25}\n')
    more, _ = read_events(p, offset)
    assert [e.loss for e in more] == [0.25] and not math.isnan(more[0].loss)


def test_preview_strip_splits_back_into_its_tiles():
    import numpy as np

    from denoise_studio.core.runfolder import preview_strip, split_strip
    rng = np.random.default_rng(0)
    imgs = {k: rng.random((12, 9, 3)).astype(np.float32) for k in ("noisy", "reconstruction", "clean")}
    imgs["noise"] = np.zeros((12, 9, 3), np.float32)
    back = split_strip(preview_strip(imgs))
    for k in ("noisy", "reconstruction", "clean"):
        assert np.array_equal(back[k], imgs[k])
    assert np.allclose(back["noise"], 0)



def test_checkpoints_hold_the_weights_average_and_the_raw_weights_to_resume(tmp_path, images):
    """With a moving average on (the default), model.* (what every reader uses) is the average and
    train.* the optimizer's weights; the average equals the recurrence ema ← d·ema + (1−d)·w, with
    d = min(decay, (1+s)/(10+s)), computed here from the raw weights after every step."""
    before: list[dict] = []

    def spy(trainer, step):   # the raw weights before each step
        before.append({k: v.detach().clone() for k, v in trainer.model.named_parameters()})
        return Trainer.batch(trainer, step)

    result, _, run = train(tmp_path, images, steps=12, checkpoint_every=12, eval_every=100, preview_every=100,
                           ema=0.9, batches=spy)
    assert result.reason == "steps"
    ckpt = load_checkpoint(run.checkpoint("last"))
    assert ckpt.train_state is not None and set(ckpt.train_state) == set(ckpt.model_state)
    ema = dict(before[0])   # the average starts at the initial weights
    for s, w in enumerate(before[1:] + [ckpt.train_state]):
        d = min(0.9, (1 + s) / (10 + s))
        ema = {k: d * ema[k] + (1 - d) * w[k] for k in ema}
    for k in ema:
        torch.testing.assert_close(ckpt.model_state[k], ema[k], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(ckpt.model_state[k], ckpt.train_state[k]) for k in ema)


def test_without_the_average_checkpoints_hold_the_raw_weights_only(tmp_path, images):
    _, _, run = train(tmp_path, images, steps=5, checkpoint_every=5, eval_every=100, preview_every=100, ema=0.0)
    ckpt = load_checkpoint(run.checkpoint("last"))
    assert ckpt.train_state is None and ckpt.meta["config"]["ema"] == 0.0
