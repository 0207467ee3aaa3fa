"""Closing the window while training, with each of the three choices, and Ctrl+C to the app."""
import json
import os
import signal
import subprocess
import sys
import time

from denoise_studio.core.runlock import writer
from denoise_studio.core.spec import spec_from_dict
from tests.gui.conftest import CHILD_TIMEOUT_MS
from tests.imagegen import TINY_SPEC


def events(run):
    path = run / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def start(view, qtbot, steps=100_000):
    view.steps.setValue(steps)
    assert view.start()
    qtbot.waitUntil(lambda: view.loss_plot.raw.n >= 3, timeout=CHILD_TIMEOUT_MS)
    return view.current_run


def test_close_with_stop_keeps_the_checkpoint_and_a_terminal_event(window, view, qtbot):
    from denoise_studio.core.checkpoint import load_checkpoint
    run = start(view, qtbot)
    window.close_choice = "stop"
    assert window.close()
    last = events(run)[-1]
    assert last["event"] == "finished" and last["reason"] == "stopped" and last["step"] >= 3
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").step == last["step"]
    assert writer(run) is None and not view.session.running


def test_close_with_cancel_keeps_the_window_and_the_run(window, view, qtbot):
    run = start(view, qtbot)
    window.close_choice = "cancel"
    assert not window.close()
    assert window.isVisible() and view.session.running
    seen = view.loss_plot.raw.n
    qtbot.waitUntil(lambda: view.loss_plot.raw.n > seen + 2, timeout=30_000)   # still training
    assert writer(run)["pid"] == view.session.process.pid


def test_close_keeping_training_in_background_finishes_the_run_headless(window, view, qtbot):
    run = start(view, qtbot, steps=300)
    pid = view.session.process.pid
    window.close_choice = "background"
    assert window.close()
    assert not view.session.running and view.session.process is None
    import multiprocessing
    assert all(p.pid != pid for p in multiprocessing.active_children())   # the app's exit won't reap it
    assert writer(run)["pid"] == pid                                         # still the run's writer
    deadline = time.time() + 120
    while time.time() < deadline and not any(e["event"] in ("finished", "failed") for e in events(run)):
        time.sleep(0.2)
    last = events(run)[-1]
    assert last["event"] == "finished" and last["reason"] == "steps" and last["step"] == 300
    deadline = time.time() + 10
    while time.time() < deadline and writer(run) is not None:
        time.sleep(0.1)
    assert writer(run) is None
    os.waitpid(pid, 0)   # reap it here; the test process is its parent


def test_ctrl_c_quits_the_app_within_5_seconds_without_a_traceback(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "DENOISE_STUDIO_SETTINGS": str(tmp_path / "s.ini"),
           "DENOISE_STUDIO_RUNS": str(tmp_path / "runs")}
    app = subprocess.Popen([sys.executable, "-m", "denoise_studio"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        children = ""
        while time.time() < deadline and not children:   # the spare child starts once the window shows
            children = subprocess.run(["pgrep", "-P", str(app.pid)], capture_output=True, text=True).stdout
            assert app.poll() is None, app.stderr.read()
            time.sleep(0.2)
        time.sleep(1.0)
        t0 = time.time()
        os.killpg(app.pid, signal.SIGINT)    # as a terminal does: the whole process group
        _, err = app.communicate(timeout=30)
        took = time.time() - t0
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
    assert took < 5, took
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert app.returncode == 0


def test_paused_is_visible_and_the_run_folder_path_can_be_copied(window, view, qtbot):
    from PySide6.QtGui import QGuiApplication
    run = start(view, qtbot)
    assert view.run_path.text() == str(run) and view.run_path.isReadOnly()
    view.copy_run_path()
    assert QGuiApplication.clipboard().text() == str(run)
    view.toggle_pause()
    qtbot.wait(300)
    assert view.status.text().startswith(f"Paused at step {view.last_step:,}")
    assert [m.value() for m in view.loss_plot.pause_marks] == [view.last_step]
    view.stop()
    qtbot.waitUntil(lambda: not view.session.running, timeout=60_000)
    view.loss_plot.clear()
    assert view.loss_plot.pause_marks == []


def test_opening_a_run_whose_writer_died_says_so_and_stops_following(view, tmp_path):
    from denoise_studio.core.events import CheckpointEvent, StartedEvent, StepEvent
    from denoise_studio.core.plan import TrainConfig
    from denoise_studio.core.runfolder import RunFolder
    run = RunFolder.create(tmp_path / "dead", spec_from_dict(TINY_SPEC), TrainConfig().to_dict())
    for ev in (StartedEvent(step=0, time=1.0, total_steps=50), StepEvent(step=1, time=2.0, loss=0.1),
               CheckpointEvent(step=1, time=3.0, path="checkpoints/last.safetensors"),
               StepEvent(step=2, time=4.0, loss=0.1)):
        run(ev)
    run.close()    # as if killed: no terminal event, the lock is free
    assert view.open_run(run.path)
    assert "the writer is gone; last checkpoint at step 1" in view.status.text()
    assert not view.follow_timer.isActive()


def test_resume_is_refused_while_another_process_writes_the_run(view, tmp_path):
    from denoise_studio.core.plan import TrainConfig
    from denoise_studio.core.runfolder import RunFolder
    run = RunFolder.create(tmp_path / "busy", spec_from_dict(TINY_SPEC), TrainConfig().to_dict())
    before = sorted(p.name for p in run.path.rglob("*"))
    view.current_run = run.path
    assert not view.resume()
    assert f"is being written by process {os.getpid()} on " in view.message.text()
    assert not view.session.running and sorted(p.name for p in run.path.rglob("*")) == before
    run.close()
