"""Run lifecycle in core: stop reasons, the writer lock, damaged events lines and configs,
the training plan."""
import json
import math
import subprocess
import sys
import time
from dataclasses import FrozenInstanceError, fields

import numpy as np
import pytest

from denoise_studio.core.data import ImageSet
from denoise_studio.core.errors import DenoiseError
from denoise_studio.core.events import EVENT_TYPES, FINISH_REASONS, PreviewEvent, event_from_json
from denoise_studio.core.plan import ConfigError, TrainConfig, cadences, new_run_dir, round_crop
from denoise_studio.core.runfolder import RunFolder, preview_path, read_events
from denoise_studio.core.runlock import RunBusyError, RunLock, writer
from denoise_studio.core.spec import spec_from_dict
from denoise_studio.core.trainer import Control, Trainer
from tests.imagegen import TINY_SPEC, write_folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return ImageSet.load(write_folder(tmp_path_factory.mktemp("imgs"), n=6, size=40))


def config(**kw):
    base = dict(steps=40, batch_size=4, crop=16, lr=3e-3, device="cpu", warmup=2, eval_every=10,
                preview_every=10, checkpoint_every=100, sigma=(25.0, 25.0), seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("reason", ["stopped", "interrupted", "terminated"])
def test_a_stop_request_finishes_the_step_and_saves_a_checkpoint_with_its_reason(tmp_path, images, reason):
    from denoise_studio.core.checkpoint import load_checkpoint
    spec = spec_from_dict(TINY_SPEC)
    cfg = config()
    run = RunFolder.create(tmp_path / "run", spec, cfg.to_dict())
    control = Control()
    stop_at = 7   # between checkpoints (every 100): only the stop can have saved one

    def sink(e):
        if e.name == "step" and e.step == stop_at:
            control.request_stop(reason)
            control.request_stop("stopped")   # the first reason wins
    result = Trainer(spec, cfg, sinks=[sink], run=run, control=control, images=images).run()
    assert (result.name, result.reason, result.step) == ("finished", reason, stop_at)
    assert load_checkpoint(run.checkpoint("last")).step == stop_at
    lines = [json.loads(x) for x in run.events_path.read_text().splitlines()]
    assert lines[-1] == {"event": "finished", "step": stop_at, "time": lines[-1]["time"], "reason": reason}
    assert writer(run.path) is None   # the lock is released after the terminal event


def test_preview_carries_noise_statistics_on_the_0_255_scale(tmp_path, images):
    spec = spec_from_dict(TINY_SPEC)
    run = RunFolder.create(tmp_path / "run", spec, config().to_dict())
    previews = []
    Trainer(spec, config(steps=10), sinks=[lambda e: e.name == "preview" and previews.append(e)], run=run,
            images=images).run()
    stats = previews[-1].stats
    assert set(stats) >= {"noise_std", "true_noise_std", "psnr", "noisy_psnr"}
    assert 20 < stats["true_noise_std"] < 30          # σ = 25 validation noise (clipping trims a little)
    assert stats["psnr"] == pytest.approx(previews[-1].psnr)
    assert 18 < stats["noisy_psnr"] < 23
    line = [json.loads(x) for x in run.events_path.read_text().splitlines() if '"preview"' in x][-1]
    assert line["stats"] == pytest.approx(stats)       # written to events.jsonl too


def test_sinks_see_identical_events_in_either_order_and_the_run_folder_changes_none(tmp_path):
    spec = spec_from_dict(TINY_SPEC)
    tile = np.full((8, 8, 3), 0.5, np.float32)
    images = {"noisy": tile, "noise": tile - 0.5, "reconstruction": tile, "clean": tile}
    seen = {}
    for order in ("run first", "run last"):
        run = RunFolder.create(tmp_path / order.replace(" ", "_"), spec, config().to_dict())
        event = PreviewEvent(step=100, time=1.0, psnr=30.0, images=images, stats={"noise_std": 1.0})
        got = []
        sinks = [run, got.append] if order == "run first" else [got.append, run]
        for sink in sinks:     # what Trainer.emit does
            sink(event)
        run.close()
        assert got == [event] and got[0] is event and event.path is None   # unchanged by the run-folder sink
        with pytest.raises(FrozenInstanceError):
            event.path = "elsewhere.png"   # type: ignore[misc]
        line = json.loads(run.events_path.read_text())
        assert line["path"] == preview_path(100) == "previews/step_0000100.png"
        assert (run.path / line["path"]).is_file()
        seen[order] = [e.to_json() for e in got]
    assert seen["run first"] == seen["run last"]


def test_the_trainer_names_the_preview_before_emitting_so_every_sink_sees_its_path(tmp_path, images):
    spec = spec_from_dict(TINY_SPEC)
    run = RunFolder.create(tmp_path / "run", spec, config().to_dict())
    previews = []
    Trainer(spec, config(steps=10), sinks=[lambda e: e.name == "preview" and previews.append(e)], run=run,
            images=images).run()
    lines = [json.loads(x) for x in run.events_path.read_text().splitlines() if '"preview"' in x]
    assert [e.path for e in previews] == [x["path"] for x in lines] == [preview_path(10)]


def test_one_writer_per_folder_and_readers_see_whether_it_lives(tmp_path, images):
    spec = spec_from_dict(TINY_SPEC)
    run = RunFolder.create(tmp_path / "run", spec, config().to_dict())
    info = writer(run.path)
    assert info["pid"] > 0 and info["host"]
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.path.rglob("*"))
    with pytest.raises(RunBusyError, match=rf"being written by process {info['pid']} on "):
        RunFolder.create(run.path, spec, config(steps=99).to_dict())
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.path.rglob("*")) == before
    run.close()
    assert writer(run.path) is None
    RunFolder.create(run.path, spec, config().to_dict()).close()   # free again


def test_the_lock_dies_with_its_process(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import sys,time; from denoise_studio.core.runlock import RunLock;"
                              f"lock = RunLock.acquire({str(folder)!r}); print('held', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    assert writer(folder)["pid"] == child.pid
    with pytest.raises(RunBusyError, match=str(child.pid)):
        RunLock.acquire(folder)
    child.kill()
    child.wait()
    assert writer(folder) is None     # no stale pid file: the OS dropped the lock
    RunLock.acquire(folder).release()


def test_a_new_run_refuses_a_folder_that_already_holds_one_and_leaves_it_unchanged(tmp_path):
    spec = spec_from_dict(TINY_SPEC)
    RunFolder.create(tmp_path / "run", spec, config().to_dict()).close()
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(DenoiseError, match="already holds a run; pass --resume"):
        RunFolder.create(tmp_path / "run", spec, config(steps=5).to_dict(), new=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before


@pytest.mark.parametrize("what", ["checkpoints", "previews"])
def test_a_file_where_a_subfolder_belongs_is_refused_and_nothing_is_left(tmp_path, what):
    spec = spec_from_dict(TINY_SPEC)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / what).write_text("x")
    with pytest.raises(DenoiseError, match=f"{what} is a file"):
        RunFolder.create(tmp_path / "run", spec, config().to_dict())
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [what]


def test_out_that_is_a_file_or_under_proc_is_one_clear_error(tmp_path):
    spec = spec_from_dict(TINY_SPEC)
    (tmp_path / "f").write_text("mine")
    with pytest.raises(DenoiseError, match="is a file, not a folder"):
        RunFolder.create(tmp_path / "f", spec, config().to_dict())
    assert (tmp_path / "f").read_text() == "mine"
    with pytest.raises(DenoiseError, match="cannot create the run folder /proc/"):
        RunFolder.create("/proc/denoise-studio-run/x", spec, config().to_dict())
    with pytest.raises(DenoiseError, match="nested/deeper"):
        (tmp_path / "ro").write_text("")
        RunFolder.create(tmp_path / "ro" / "nested" / "deeper", spec, config().to_dict())


# --- damaged events lines, by class: each is skipped and counted, never raised ---

def _wrong_values(kind: str):
    base = kind.split("|")[0].strip()
    out = [[1, 2], {"a": 1}, "abc", True]
    if base != "float":
        out.append(1.5)
    if base not in ("int", "float"):
        out.append(3)
    return [v for v in out if not (base == "list" and isinstance(v, list)) and
            not (base == "dict" and isinstance(v, dict)) and not (base == "str" and isinstance(v, str)) and
            not (base == "bool" and isinstance(v, bool))]


def damaged_lines():
    lines = [b"[1,2,3]", b"42", b'"step"', b"null", b"{", b'{"event": ["step"], "step": 1, "time": 0}',
             b'{"event": "nope", "step": 1, "time": 0}', b'{"event": "step"}', b'\xff\xfe{"event": "step"}',
             b'{"event": "finished", "step": 3, "time": 0, "reason": "bogus"}',
             b'{"event": "step", "step": -4, "time": 0}', b"[" * 5000 + b"]" * 5000]
    for cls in EVENT_TYPES.values():
        good = cls(step=1, time=0.0).to_json()
        for f in fields(cls):
            if f.metadata.get("json", True):
                for bad in _wrong_values(str(f.type)):
                    lines.append(json.dumps({**good, f.name: bad}).encode())
    return lines


def test_every_damaged_events_line_is_skipped_and_counted(tmp_path):
    bad = damaged_lines()
    good = [json.dumps({"event": "step", "step": 1, "time": 1.0, "loss": 0.5, "lr": 0.1, "images_per_s": 3}).encode(),
            json.dumps({"event": "finished", "step": 2, "time": 2.0, "reason": "interrupted"}).encode()]
    (tmp_path / "spec.json").write_text("{}")
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(bad + good) + b"\n")
    run = RunFolder(tmp_path)
    events, offset = run.read_events()
    assert [e.name for e in events] == ["step", "finished"]
    assert events[0].loss == 0.5 and isinstance(events[0].images_per_s, float)
    assert run.damaged_lines == len(bad) and len(bad) > 60
    assert offset == (tmp_path / "events.jsonl").stat().st_size


def test_null_floats_read_back_as_nan_and_optional_fields_as_none():
    ev = event_from_json({"event": "step", "step": 3, "time": 1, "loss": None, "grad_norms": None})
    assert math.isnan(ev.loss) and ev.grad_norms is None
    assert event_from_json({"event": "finished", "step": 3, "time": 1}).reason == "steps"
    assert set(FINISH_REASONS) == {"steps", "time", "stopped", "interrupted", "terminated"}


def test_events_file_that_is_a_folder_is_one_clear_error(tmp_path):
    (tmp_path / "events.jsonl").mkdir()
    with pytest.raises(DenoiseError, match="events.jsonl is not a regular file"):
        read_events(tmp_path / "events.jsonl")


# --- config.json: one validating constructor ---

WRONG = {"int": [1.5, "7", True, None, [1], -1], "float": ["fast", None, [1], True, -1.0, float("nan")],
         "str": [5, None, [], ""], "bool": ["yes", 1, None], "sigma": [5, "5-50", [5], [50, 5], [5, 300], ["a", 1]]}


def _wrong_for(name):
    if name == "sigma":
        return WRONG["sigma"]
    kind = str(next(f.type for f in fields(TrainConfig) if f.name == name)).split("|")[0].strip()
    values = WRONG.get(kind, [[1]])
    if name in ("channels_last", "threads", "time_limit"):
        values = [v for v in values if v is not None]
    if name in ("weight_decay", "grad_clip", "warmup", "seed"):
        values = [v for v in values if v != 0]
    return values


@pytest.mark.parametrize("name", [f.name for f in fields(TrainConfig)])
def test_every_config_field_of_a_wrong_type_or_range_is_refused_by_name(name):
    good = TrainConfig().to_dict()
    for bad in _wrong_for(name):
        with pytest.raises(ConfigError, match=rf"^config.json: {name} is .*(must|use one of)"):
            TrainConfig.from_dict({**good, name: bad}, source="config.json")
    assert TrainConfig.from_dict(good) == TrainConfig()


def test_config_that_is_not_an_object_or_lacks_what_a_resume_needs_is_refused():
    from denoise_studio.core.plan import RESUME_REQUIRED
    with pytest.raises(ConfigError, match="must be an object of settings, not a list"):
        TrainConfig.from_dict([1, 2], source="c")
    with pytest.raises(ConfigError, match="lacks data, batch_size, crop, lr"):
        TrainConfig.from_dict({"steps": 5}, required=RESUME_REQUIRED)
    with pytest.raises(ConfigError, match="timesteps is 0"):
        TrainConfig.from_dict({"noise": "ddpm", "timesteps": 0})


def test_resume_refuses_a_missing_garbage_or_list_config(tmp_path):
    from denoise_studio.core.errors import CheckpointError
    run = RunFolder(tmp_path)
    with pytest.raises(CheckpointError, match="has no config.json"):
        run.config()
    (tmp_path / "config.json").write_bytes(b"\x00garbage{")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        run.config()
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="holds a list"):
        run.config()


# --- the plan ---

def test_the_plan_rounds_crops_and_spaces_evaluations():
    from denoise_studio.core.presets import load_preset, preset_names
    unet = next(load_preset(n) for n in preset_names() if "unet" in n)
    from denoise_studio.core.analysis import downsampling_factor
    f = downsampling_factor(unet)
    assert f > 1 and round_crop(f * 3 + 1, unet) == f * 3 and round_crop(1, unet) == f
    assert round_crop(37, spec_from_dict(TINY_SPEC)) == 37
    assert cadences(2000) == {"eval_every": 100, "preview_every": 50, "checkpoint_every": 200}
    assert cadences(100) == {"eval_every": 10, "preview_every": 10, "checkpoint_every": 50}
    assert TrainConfig().steps == 2000


def test_run_folders_are_named_by_network_and_time_and_never_collide(tmp_path):
    a = new_run_dir("my net/../x", tmp_path)
    assert a.parent == tmp_path and a.name.startswith("my-net----x-")
    a.mkdir()
    b = new_run_dir("my net/../x", tmp_path)
    assert b != a and b.parent == tmp_path


PARENT = """
import json, os, sys, time
from denoise_studio.core.worker import spawn_context, start_ignoring_sigint, warm_child
from tests.imagegen import TINY_SPEC
ctx = spawn_context()
jobs, ready, events, stop, pause, detach = (ctx.Queue(), ctx.Event(), ctx.Queue(), ctx.Event(), ctx.Event(),
                                            ctx.Event())
child = ctx.Process(target=warm_child, args=(jobs, ready, events, stop, pause, detach), daemon=True)
start_ignoring_sigint(child)
cfg = dict(steps=100000, batch_size=4, crop=16, device="cpu", data=sys.argv[2], checkpoint_every=100000,
           eval_every=100000, preview_every=100000, threads=1)
jobs.put((TINY_SPEC, cfg, sys.argv[1], False))
while True:
    ev = events.get()
    if ev.name == "step" and ev.step >= 3:
        break
print(child.pid, flush=True)
os._exit(0)   # the app dies: no cleanup, no stop flag
"""


def test_a_training_child_whose_app_dies_stops_and_keeps_its_work(tmp_path):
    from denoise_studio.core.checkpoint import load_checkpoint
    data = write_folder(tmp_path / "data", n=5, size=40)
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-c", PARENT, str(out), str(data)], capture_output=True, text=True,
                         timeout=120, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert res.returncode == 0, res.stderr
    deadline = time.time() + 30
    lines = []
    while time.time() < deadline:
        lines = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
        if lines and lines[-1]["event"] in ("finished", "failed") and writer(out) is None:
            break
        time.sleep(0.1)
    assert lines[-1]["event"] == "finished" and lines[-1]["reason"] == "terminated", lines[-1]
    assert load_checkpoint(out / "checkpoints" / "last.safetensors").step == lines[-1]["step"] >= 3


def test_a_run_from_before_objectives_existed_resumes_as_supervised():
    from denoise_studio.core.plan import RESUME_REQUIRED, TrainConfig
    old = {k: v for k, v in TrainConfig().to_dict().items()
           if k not in ("objective", "synthetic_noise", "gain", "read", "blur")}
    assert "objective" not in RESUME_REQUIRED
    assert TrainConfig.from_dict(old, required=RESUME_REQUIRED).objective == "supervised"


def test_dispatch_calls_the_handler_of_the_event_type_only():
    from denoise_studio.core.events import EvalEvent, StepEvent, dispatch
    seen = []
    handlers = {StepEvent: lambda ev, tag: seen.append((ev.step, tag))}
    dispatch(handlers, StepEvent(step=3, time=0.0), "live")
    dispatch(handlers, EvalEvent(step=4, time=0.0), "live")   # no handler: ignored
    assert seen == [(3, "live")]
