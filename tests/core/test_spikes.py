"""The loss-spike guard: a step that throws training off is undone, the run goes on."""
import dataclasses
import json

import pytest
import torch

from denoise_studio.core import spikes
from denoise_studio.core.checkpoint import load_checkpoint
from denoise_studio.core.data import ImageSet
from denoise_studio.core.events import RecoveredEvent, event_from_json
from denoise_studio.core.runfolder import RunFolder
from denoise_studio.core.spec import spec_from_dict
from denoise_studio.core.spikes import SpikeGuard
from denoise_studio.core.trainer import TrainConfig, Trainer, lr_at
from tests.imagegen import TINY_SPEC, write_folder


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(spikes, "EVERY", 10)
    monkeypatch.setattr(spikes, "MIN_HISTORY", 10)


def test_recover_restores_the_older_snapshot_of_weights_and_optimizer_and_backs_off(quick):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    guard = SpikeGuard()
    states = {}
    for step in range(1, 31):
        net(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        guard.observe(step, 1.0, {"model": net, "optimizer": opt})
        if step in (20, 30):
            states[step] = ({k: v.clone() for k, v in net.state_dict().items()},
                            opt.state_dict()["state"][0]["exp_avg"].clone())
    assert not guard.is_spike(9.0) and guard.is_spike(11.0)   # 10× the median of 1.0
    with torch.no_grad():
        net.weight.mul_(1e6)
    assert guard.recover({"model": net, "optimizer": opt}) == 20   # the older of the two kept (20, 30)
    for k, v in states[20][0].items():
        torch.testing.assert_close(net.state_dict()[k], v)
    torch.testing.assert_close(opt.state_dict()["state"][0]["exp_avg"], states[20][1])
    assert guard.lr_scale == 0.5 and guard.recoveries == 1
    assert guard.recover({"model": net, "optimizer": opt}) == 20 and guard.lr_scale == 0.25


def test_no_snapshot_no_history_no_spike(quick):
    guard = SpikeGuard()
    for step in range(1, 10):   # fewer losses than MIN_HISTORY, and no snapshot yet
        guard.observe(step, 1.0, {})
    assert not guard.is_spike(1e9)


def test_an_unhealthy_step_is_not_snapshotted(quick):
    net = torch.nn.Linear(2, 2)
    guard = SpikeGuard()
    for step in range(1, 20):
        guard.observe(step, 1.0, {"model": net})
    guard.observe(20, 5.0, {"model": net})   # above HEALTHY × median: keep the older snapshot only
    assert [s for s, _ in guard.snapshots] == [10]


def test_a_spike_in_training_is_undone_and_the_run_finishes(tmp_path, quick):
    images = ImageSet.load(write_folder(tmp_path / "imgs", n=6, size=48))

    def spiky(trainer, step):   # one batch with a garbage target: a loss far above the median
        pairs, level = trainer.batch(step)
        if step == 44:
            pairs.target = pairs.target + 10.0
        return pairs, level

    spec = spec_from_dict(TINY_SPEC)
    cfg = TrainConfig(steps=60, batch_size=4, crop=24, lr=3e-3, device="cpu", warmup=5, eval_every=20,
                      preview_every=100, checkpoint_every=20, sigma=(25.0, 25.0), seed=3)
    run = RunFolder.create(tmp_path / "run", spec, cfg.to_dict())
    events = []
    result = Trainer(spec, cfg, sinks=[events.append], run=run, images=images, batches=spiky).run()
    assert result.name == "finished" and result.step == 60
    recovered = [e for e in events if isinstance(e, RecoveredEvent)]
    assert len(recovered) == 1
    ev = recovered[0]
    assert ev.step == 44 and ev.restored_step == 30 and ev.lr_scale == 0.5
    assert "step 45" in ev.message and "step 30" in ev.message
    steps = {e.step: e for e in events if e.name == "step"}
    assert 45 not in steps and 44 in steps and 46 in steps   # the spiking batch was skipped, not learnt
    for s in (46, 60):   # the learning rate is halved from then on
        assert steps[s].lr == pytest.approx(0.5 * lr_at(cfg, s - 1, (s - 1) / cfg.steps))
    assert steps[44].lr == pytest.approx(lr_at(cfg, 43, 43 / cfg.steps))
    assert max(e.loss for e in steps.values() if e.step > 45) < 10 * min(e.loss for e in steps.values())
    lines = [json.loads(x) for x in run.events_path.read_text().splitlines()]
    written = [event_from_json(x) for x in lines if x["event"] == "recovered"]
    assert written == [ev]   # the run folder records it, and it reads back as the same event
    assert load_checkpoint(run.checkpoint("last")).meta["lr_scale"] == 0.5

    # a resume keeps the back-off: its learning rate continues at half the schedule's
    more = []
    cfg80 = dataclasses.replace(cfg, steps=80)
    Trainer(spec, cfg80, sinks=[more.append], run=run, images=images, resume=True).run()
    lr61 = next(e.lr for e in more if e.name == "step" and e.step == 61)
    assert lr61 == pytest.approx(0.5 * lr_at(cfg80, 60, 60 / 80))


def test_the_command_line_prints_the_recovery():
    import io

    from denoise_studio.train_commands import ProgressPrinter
    out = io.StringIO()
    ProgressPrinter(stream=out)(RecoveredEvent(step=44, time=0.0, loss=8.5, restored_step=30, lr_scale=0.5,
                                               message="the loss jumped to 8.5 at step 45"))
    assert out.getvalue() == "recovered: the loss jumped to 8.5 at step 45\n"
